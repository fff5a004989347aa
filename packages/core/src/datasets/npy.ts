// NumPy .npy reader (format versions 1–3): the header is a Python dict literal, data is raw.
// Files are read by offset, one sample at a time, so an array larger than memory (or than Node's
// 2 GiB buffer limit) still streams.
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { errDatasetInvalid } from '../errors';
import type { Tensor, TensorDType } from '../tensor';

/** The element types qforge reads, by NumPy `descr`. */
const DESCR: Record<string, { kind: 'float' | 'int' | 'uint' | 'bool'; bytes: number }> = {
  '<f2': { kind: 'float', bytes: 2 },
  '<f4': { kind: 'float', bytes: 4 },
  '<f8': { kind: 'float', bytes: 8 },
  '|u1': { kind: 'uint', bytes: 1 },
  '|i1': { kind: 'int', bytes: 1 },
  '<i4': { kind: 'int', bytes: 4 },
  '<i8': { kind: 'int', bytes: 8 },
  '|b1': { kind: 'bool', bytes: 1 },
};

/** A parsed .npy header: where the data starts and how to read it. */
export interface NpyHeader {
  shape: number[];
  /** NumPy dtype string, e.g. `<f4`. */
  dtype: string;
  /** Byte offset of the first element. */
  dataOffset: number;
  bytesPerElement: number;
}

export interface NpyArray {
  shape: number[];
  dtype: string;
  /** The values as float32 (integers and booleans widened). */
  data: Float32Array;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Parses the header from the first bytes of a .npy file (at least the first 64 KiB, or all of it). */
export function parseNpyHeader(buf: Buffer, source = '<npy>', fileSize = buf.length): NpyHeader {
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') throw errDatasetInvalid(source, 'not a .npy file (bad magic)');
  const major = buf.readUInt8(6);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  if (headerStart + headerLen > buf.length) throw errDatasetInvalid(source, 'unreadable .npy header (truncated)');
  const header = buf.toString('latin1', headerStart, headerStart + headerLen);
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*True/.test(header);
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw errDatasetInvalid(source, 'unreadable .npy header');
  if (fortran) throw errDatasetInvalid(source, 'Fortran-ordered arrays are not supported', 'Save with np.ascontiguousarray(x).');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw errDatasetInvalid(source, `bad shape (${shapeText}) in the .npy header`);
  const type = DESCR[descr];
  if (!type) throw errDatasetInvalid(source, `dtype ${descr} is not supported`, 'Use float32, float64, float16, uint8, int8, int32, int64 or bool little-endian arrays.');
  const dataOffset = headerStart + headerLen;
  const n = shape.reduce((a, b) => a * b, 1);
  if (fileSize < dataOffset + n * type.bytes) throw errDatasetInvalid(source, `file is truncated: needs ${n * type.bytes} data bytes, has ${fileSize - dataOffset}`);
  return { shape, dtype: descr, dataOffset, bytesPerElement: type.bytes };
}

/**
 * Decodes `count` raw elements of a .npy dtype into a tensor of the dtype a model input declares.
 * Widening is allowed (int → float, int32 → int64); anything that could change values (float →
 * int, out-of-range integers, bools that are not 0/1) is refused with E_DATASET_INVALID.
 */
export function decodeElements(bytes: Buffer, descr: string, target: string, dims: number[], source: string): Tensor {
  const type = DESCR[descr];
  const n = bytes.length / type.bytes;
  const read = (i: number): number | bigint => {
    const o = i * type.bytes;
    switch (descr) {
      case '<f2': return halfToFloat(bytes.readUInt16LE(o));
      case '<f4': return bytes.readFloatLE(o);
      case '<f8': return bytes.readDoubleLE(o);
      case '|u1': case '|b1': return bytes[o];
      case '|i1': return bytes.readInt8(o);
      case '<i4': return bytes.readInt32LE(o);
      default: return bytes.readBigInt64LE(o);
    }
  };
  const refuse = (why: string) => errDatasetInvalid(source, `${descr} data cannot feed a ${target} input: ${why}`, 'Save the array with the dtype the model input declares (`qforge inspect <model>` lists them).');
  switch (target) {
    case 'float32':
    case 'float16':
    case 'float64': {
      if (type.kind === 'bool') throw refuse('booleans are not numbers');
      const out = new Float32Array(n);
      if (descr === '<f4') new Uint8Array(out.buffer).set(bytes);
      else for (let i = 0; i < n; i++) out[i] = Number(read(i));
      return { dtype: 'float32', dims, data: out };
    }
    case 'int64':
    case 'int32': {
      if (type.kind === 'float' || type.kind === 'bool') throw refuse('values would be reinterpreted');
      if (target === 'int64') {
        const out = new BigInt64Array(n);
        for (let i = 0; i < n; i++) out[i] = BigInt(read(i));
        return { dtype: 'int64', dims, data: out };
      }
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = read(i);
        if (v > 2147483647 || v < -2147483648) throw refuse(`element ${i} (${v}) does not fit int32`);
        out[i] = Number(v);
      }
      return { dtype: 'int32', dims, data: out };
    }
    case 'bool': {
      if (type.kind !== 'bool' && descr !== '|u1') throw refuse('use a bool or uint8 (0/1) array');
      for (let i = 0; i < n; i++) if (bytes[i] > 1) throw refuse(`element ${i} is ${bytes[i]}, not 0 or 1`);
      return { dtype: 'bool', dims, data: Uint8Array.from(bytes) };
    }
    case 'uint8':
    case 'int8': {
      if ((target === 'uint8' && descr !== '|u1') || (target === 'int8' && descr !== '|i1')) throw refuse(`use a ${target} array`);
      return target === 'uint8' ? { dtype: 'uint8', dims, data: Uint8Array.from(bytes) } : { dtype: 'int8', dims, data: new Int8Array(Uint8Array.from(bytes).buffer) };
    }
    default:
      throw errDatasetInvalid(source, `model inputs of type ${target} cannot be fed from .npy data`);
  }
}

/** A .npy file opened for reading by element range. */
export class NpyFile {
  readonly header: NpyHeader;
  constructor(readonly path: string) {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(Math.min(size, 65536));
      readSync(fd, head, 0, head.length, 0);
      this.header = parseNpyHeader(head, path, size);
    } finally {
      closeSync(fd);
    }
  }

  /** Reads `count` elements starting at element `start` as raw bytes. */
  readRaw(start: number, count: number): Buffer {
    const { dataOffset, bytesPerElement } = this.header;
    const out = Buffer.alloc(count * bytesPerElement);
    const fd = openSync(this.path, 'r');
    try {
      let done = 0;
      while (done < out.length) {
        const got = readSync(fd, out, done, out.length - done, dataOffset + start * bytesPerElement + done);
        if (got === 0) throw errDatasetInvalid(this.path, 'file is truncated');
        done += got;
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }
}

/** Parses a whole .npy held in memory (values widened to float32). */
export function parseNpy(buf: Buffer, source = '<npy>'): NpyArray {
  const header = parseNpyHeader(buf, source);
  const n = header.shape.reduce((a, b) => a * b, 1);
  const raw = buf.subarray(header.dataOffset, header.dataOffset + n * header.bytesPerElement);
  if (header.dtype === '|b1') return { shape: header.shape, dtype: header.dtype, data: Float32Array.from(raw) };
  const t = decodeElements(Buffer.from(raw), header.dtype, 'float32', header.shape, source);
  return { shape: header.shape, dtype: header.dtype, data: t.data as Float32Array };
}

export function readNpy(path: string): NpyArray {
  return parseNpy(readFileSync(path), path);
}

const DESCR_OF: Partial<Record<TensorDType, string>> = { float32: '<f4', int64: '<i8', int32: '<i4', uint8: '|u1', int8: '|i1', bool: '|b1' };

/** Writes a .npy (version 1.0) — used by tools and tests. Float32 data unless a tensor says otherwise. */
export function encodeNpy(shape: number[], data: Float32Array | Tensor['data'], dtype: TensorDType = 'float32'): Buffer {
  const descr = DESCR_OF[dtype];
  if (!descr) throw new RangeError(`cannot write ${dtype} as .npy`);
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.writeUInt8(0x93, 0);
  head.write('NUMPY', 1, 'latin1');
  head.writeUInt8(1, 6);
  head.writeUInt8(0, 7);
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}
