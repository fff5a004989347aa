// NumPy .npz archives (np.savez / np.savez_compressed): a zip of .npy arrays keyed by name.
import { readFileSync } from 'node:fs';
import { unzipSync, zipSync } from 'fflate';
import { errDatasetInvalid } from '../errors';
import type { Tensor } from '../tensor';
import { encodeNpy, parseNpyHeader, type NpyHeader } from './npy';

export interface NpzEntry {
  header: NpyHeader;
  /** The array's raw element bytes. */
  raw: Buffer;
}

/** Reads every array of a .npz (keys without the `.npy` suffix). */
export function readNpz(path: string): Map<string, NpzEntry> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(readFileSync(path));
  } catch (e) {
    throw errDatasetInvalid(path, `not a readable .npz archive (${(e as Error).message})`, 'Write it with numpy.savez or numpy.savez_compressed.');
  }
  const out = new Map<string, NpzEntry>();
  for (const [name, bytes] of Object.entries(files)) {
    if (!name.endsWith('.npy')) throw errDatasetInvalid(path, `member "${name}" is not a .npy array`);
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const header = parseNpyHeader(buf, `${path}:${name}`);
    const n = header.shape.reduce((a, b) => a * b, 1);
    out.set(name.slice(0, -4), { header, raw: buf.subarray(header.dataOffset, header.dataOffset + n * header.bytesPerElement) });
  }
  if (!out.size) throw errDatasetInvalid(path, 'the archive holds no arrays');
  return out;
}

/** Writes a .npz (stored, like numpy.savez) from named tensors — for tools and tests. */
export function encodeNpz(arrays: Record<string, Pick<Tensor, 'dims' | 'data' | 'dtype'>>): Buffer {
  const files: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const [name, t] of Object.entries(arrays)) files[`${name}.npy`] = [new Uint8Array(encodeNpy(t.dims, t.data, t.dtype)), { level: 0 }];
  return Buffer.from(zipSync(files));
}
