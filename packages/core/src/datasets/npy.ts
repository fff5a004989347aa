// NumPy .npy reader (format versions 1–3): the header is a Python dict literal, data is raw.
import { readFileSync } from 'node:fs';
import { errDatasetInvalid } from '../errors';

export interface NpyArray {
  shape: number[];
  dtype: string;
  data: Float32Array;
}

const READERS: Record<string, (b: Buffer, off: number, n: number) => Float32Array> = {
  '<f4': (b, off, n) => new Float32Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + off + n * 4)),
  '<f8': (b, off, n) => Float32Array.from(new Float64Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + off + n * 8))),
  '<f2': (b, off, n) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = halfToFloat(b.readUInt16LE(off + 2 * i));
    return out;
  },
  '|u1': (b, off, n) => Float32Array.from(b.subarray(off, off + n)),
  '|i1': (b, off, n) => Float32Array.from(new Int8Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + off + n))),
  '<i4': (b, off, n) => Float32Array.from(new Int32Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + off + n * 4))),
  '<i8': (b, off, n) => Float32Array.from(new BigInt64Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + off + n * 8)), Number),
};

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

export function parseNpy(buf: Buffer, source = '<npy>'): NpyArray {
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') throw errDatasetInvalid(source, 'not a .npy file (bad magic)');
  const major = buf.readUInt8(6);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', headerStart, headerStart + headerLen);
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*True/.test(header);
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw errDatasetInvalid(source, 'unreadable .npy header');
  if (fortran) throw errDatasetInvalid(source, 'Fortran-ordered arrays are not supported', 'Save with np.ascontiguousarray(x).');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const reader = READERS[descr];
  if (!reader) throw errDatasetInvalid(source, `dtype ${descr} is not supported`, 'Use float32, float64, float16, uint8, int8, int32 or int64 little-endian arrays.');
  const off = headerStart + headerLen;
  const bytesPer = Number(descr.slice(2));
  if (buf.length < off + n * bytesPer) throw errDatasetInvalid(source, `file is truncated: needs ${n * bytesPer} data bytes, has ${buf.length - off}`);
  return { shape, dtype: descr, data: reader(buf, off, n) };
}

export function readNpy(path: string): NpyArray {
  return parseNpy(readFileSync(path), path);
}

/** Writes a float32 .npy (version 1.0) — used by tools and tests. */
export function encodeNpy(shape: number[], data: Float32Array): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
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
