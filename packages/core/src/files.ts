// File helpers with qforge's guarantees: inputs are only read, outputs appear atomically.
import { createHash, webcrypto } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, statSync, accessSync, constants, openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { dirname, resolve, basename, join } from 'node:path';
import writeFileAtomicLib from 'write-file-atomic';
import type { ModelFormat, ModelRef } from './contract';
import { errModelFormatUnknown, errModelNotFound, errOutputUnwritable } from './errors';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function sha256Bytes(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 computed off the main thread (WebCrypto runs digests on libuv's pool): overlaps other work. */
export async function sha256Async(data: Uint8Array): Promise<string> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data)).toString('hex');
}

/** Checks that `path` can be created (its folder exists or can be made, and is writable). */
export function ensureWritable(path: string): void {
  const abs = resolve(path);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw errOutputUnwritable(abs, 'a folder is in the way');
  const dir = dirname(abs);
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw errOutputUnwritable(abs, (e as NodeJS.ErrnoException).code === 'EACCES' ? 'permission denied' : (e as Error).message);
  }
}

/** Writes through a temporary file in the same folder and renames it into place. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  ensureWritable(path);
  try {
    await writeFileAtomicLib(resolve(path), typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  } catch (e) {
    throw errOutputUnwritable(resolve(path), (e as Error).message);
  }
}

function readHead(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const read = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/**
 * Tells the model format from the file: TFLite by its "TFL3" identifier, TensorFlow.js by its
 * model.json shape, ONNX by extension (protobuf has no magic number; the loader checks content).
 */
export function detectModelFormat(path: string): ModelFormat {
  const abs = resolve(path);
  if (!existsSync(abs)) throw errModelNotFound(abs);
  const st = statSync(abs);
  if (st.isDirectory()) {
    if (existsSync(resolve(abs, 'model.json'))) return detectModelFormat(resolve(abs, 'model.json'));
    throw errModelFormatUnknown(abs);
  }
  const head = readHead(abs, 64);
  if (head.length >= 8 && head.subarray(4, 8).toString('latin1') === 'TFL3') return 'tflite';
  const name = basename(abs).toLowerCase();
  if (name.endsWith('.json')) {
    const text = head.toString('utf8').trimStart();
    if (text.startsWith('{')) {
      try {
        const json = JSON.parse(readFileSync(abs, 'utf8')) as { format?: string; modelTopology?: { class_name?: string; node?: unknown } };
        if (json.format === 'graph-model' || (json.modelTopology && 'node' in json.modelTopology)) return 'tfjs-graph';
        if (json.modelTopology) return 'tfjs-layers';
      } catch {
        /* falls through to unknown */
      }
    }
    throw errModelFormatUnknown(abs);
  }
  if (name.endsWith('.onnx') || name.endsWith('.ort.onnx')) return 'onnx';
  if (name.endsWith('.tflite')) return 'tflite';
  throw errModelFormatUnknown(abs);
}

export function modelRef(path: string): ModelRef {
  const abs = resolve(path);
  const format = detectModelFormat(abs);
  return { path: existsSync(abs) && statSync(abs).isDirectory() ? resolve(abs, 'model.json') : abs, format };
}

/**
 * Bytes a model occupies on disk: the file itself plus the weight shards a TensorFlow.js
 * model.json lists, so size ratios compare like with like.
 */
export function modelSizeBytes(model: ModelRef): number {
  let size = statSync(model.path).size;
  if (model.format === 'tfjs-layers' || model.format === 'tfjs-graph') {
    const json = JSON.parse(readFileSync(model.path, 'utf8')) as { weightsManifest?: { paths?: string[] }[] };
    for (const g of json.weightsManifest ?? []) for (const p of g.paths ?? []) size += statSync(join(dirname(model.path), p)).size;
  }
  return size;
}
