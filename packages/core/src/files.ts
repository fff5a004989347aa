// File helpers with qforge's guarantees: inputs are only read, outputs appear atomically.
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  copyFileSync,
  createReadStream,
  existsSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { ModelFormat, ModelRef } from './contract';
import { errModelCorrupt, errModelFormatUnknown, errModelNotFound, errNotRegularFile, errOutputIsInput, errOutputUnwritable, errPathOutsideFolder, isQforgeError } from './errors';

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

/** Says what a non-regular file is, for messages. */
function fileKind(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device node';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Refuses anything but a regular file (after following symlinks) before it is opened: a FIFO or
 * /dev/zero would block or never end.
 */
export function assertRegularFile(path: string, what = 'file'): void {
  const st = statSync(path);
  if (!st.isFile()) throw errNotRegularFile(resolve(path), what, fileKind(st));
}

/** True when `candidate` is `folder` itself or lies beneath it (both absolute; compare real paths). */
export function isInsideFolder(folder: string, candidate: string): boolean {
  const rel = relative(folder, candidate);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

export interface ContainedPathOptions {
  /** A regular file (the default) or a folder. */
  kind?: 'file' | 'folder';
  /** The error for a path where nothing exists; without it, E_NOT_REGULAR_FILE says so. */
  missing?: () => Error;
}

/**
 * The one symlink policy (docs/reliability.md): a file that belongs to a folder — a weight shard or
 * external data beside its model, an image or array in a dataset, a class sub-folder — is read
 * only when its real path (`..` and every symlink resolved) lies inside the real path of one of
 * `folders`, and only when it is a regular file (or a folder, for `kind: 'folder'`). Nothing is
 * opened here, so a FIFO or device is refused before it could block. Returns the real path.
 */
export function resolveInsideFolder(path: string, folders: string | readonly string[], what: string, options: ContainedPathOptions = {}): string {
  const abs = resolve(path);
  const given = (typeof folders === 'string' ? [folders] : folders).map((f) => resolve(f));
  const roots = given.map((f) => {
    try {
      return realpathSync(f);
    } catch {
      return f;
    }
  });
  // The spelled path first, so `../x` or an absolute name is refused even when nothing is there.
  if (!given.some((g) => isInsideFolder(g, abs)) && !roots.some((r) => isInsideFolder(r, abs))) throw errPathOutsideFolder(abs, roots[0], what);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    let link: Stats | undefined;
    try {
      link = lstatSync(abs);
    } catch {
      link = undefined;
    }
    if (!link && options.missing) throw options.missing();
    throw errNotRegularFile(abs, what, link ? 'a symbolic link to nothing' : 'missing');
  }
  if (!roots.some((root) => isInsideFolder(root, real))) throw errPathOutsideFolder(abs, roots[0], what, real);
  const st = statSync(real);
  const ok = options.kind === 'folder' ? st.isDirectory() : st.isFile();
  if (!ok) throw errNotRegularFile(abs, what, options.kind === 'folder' && st.isFile() ? 'a file where a folder is needed' : fileKind(st));
  return real;
}

/** Turns an errno from a write into the words a user can act on. */
function writeFailureReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    EISDIR: 'a folder is in the way',
    ENOTDIR: 'a file is in the way of a folder on the path',
  };
  return code && words[code] ? `${words[code]} (${code})` : (e as Error).message;
}

/**
 * `path` may be written only if it is new or a regular file: replacing a symlink, FIFO, device
 * node or folder with a regular file would silently change what the user pointed at.
 */
function assertReplaceable(abs: string): void {
  let st: Stats;
  try {
    st = lstatSync(abs);
  } catch {
    return;
  }
  if (!st.isFile()) throw errOutputUnwritable(abs, `${fileKind(st)} is in the way (qforge writes only to a new path or over a regular file)`);
}

/** Checks that `path` can be created (its folder exists or can be made, and is writable). */
export function ensureWritable(path: string): void {
  const abs = resolve(path);
  assertReplaceable(abs);
  const dir = dirname(abs);
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw errOutputUnwritable(abs, writeFailureReason(e), e);
  }
}

/** The real path a (possibly not yet existing) file would have: symlinks and `..` resolved. */
function realTarget(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

/**
 * Refuses an output that is one of the inputs: same real path (through `..` and symlinks) or the
 * same file under another name (hard link).
 */
export function assertOutputNotInput(output: string, inputs: readonly string[]): void {
  const out = realTarget(output);
  let outStat: Stats | undefined;
  try {
    outStat = statSync(out);
  } catch {
    outStat = undefined;
  }
  for (const input of inputs) {
    const real = realTarget(input);
    if (real === out) throw errOutputIsInput(resolve(output), real);
    if (outStat) {
      try {
        const st = statSync(real);
        if (st.ino === outStat.ino && st.dev === outStat.dev) throw errOutputIsInput(resolve(output), real);
      } catch (e) {
        if (isQforgeError(e)) throw e;
      }
    }
  }
}

/** Checks an output path before any work starts: not an input, new or a regular file, writable. */
export function checkOutputPath(output: string, inputs: readonly string[]): void {
  assertOutputNotInput(output, inputs);
  ensureWritable(output);
}

/**
 * Every file a model is read from: the model, the weight shards of a TensorFlow.js model.json,
 * and the external-data files an ONNX model names.
 */
export function modelInputFiles(model: ModelRef): string[] {
  const files = [model.path];
  const dir = dirname(model.path);
  if (model.format === 'tfjs-layers' || model.format === 'tfjs-graph') {
    for (const p of tfjsShardPaths(model.path)) files.push(join(dir, p));
  } else if (model.format === 'onnx') {
    for (const p of onnxExternalDataLocations(model.path)) files.push(join(dir, p));
  }
  return files;
}

function tfjsShardPaths(modelJson: string): string[] {
  try {
    const json = JSON.parse(readFileSync(modelJson, 'utf8')) as { weightsManifest?: unknown };
    return manifestShardPaths(json.weightsManifest) ?? [];
  } catch {
    return [];
  }
}

/** The shard paths of a weightsManifest, or undefined when it is not a list of groups with string path lists. */
function manifestShardPaths(manifest: unknown): string[] | undefined {
  if (manifest === undefined) return [];
  if (!Array.isArray(manifest)) return undefined;
  const out: string[] = [];
  for (const g of manifest as { paths?: unknown }[]) {
    if (!g || typeof g !== 'object' || !Array.isArray(g.paths) || !g.paths.every((p) => typeof p === 'string')) return undefined;
    out.push(...(g.paths as string[]));
  }
  return out;
}

/**
 * External-data file names, found without a protobuf parser: each is a StringStringEntryProto
 * `{1: "location", 2: <name>}`, i.e. the bytes 0a 08 "location" 12 <len> <name>. Cached by path,
 * size and mtime: modelRef, the output checks and modelSizeBytes all ask within one run, and the
 * file can be large.
 */
const externalLocationCache = new Map<string, { size: number; mtimeMs: number; locations: string[] }>();
function onnxExternalDataLocations(path: string): string[] {
  const marker = Buffer.from([0x0a, 0x08, ...Buffer.from('location'), 0x12]);
  let bytes: Buffer;
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
    const hit = externalLocationCache.get(path);
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.locations;
    if (st.size > 4 * 1024 * 1024 * 1024) return [];
    bytes = readFileSync(path);
  } catch {
    return [];
  }
  const out = new Set<string>();
  for (let i = bytes.indexOf(marker); i >= 0; i = bytes.indexOf(marker, i + 1)) {
    let at = i + marker.length;
    let len = 0;
    for (let shift = 0; at < bytes.length && shift < 28; shift += 7) {
      const b = bytes[at++];
      len |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (len > 0 && len < 4096 && at + len <= bytes.length) out.add(bytes.subarray(at, at + len).toString('utf8'));
  }
  const locations = [...out];
  externalLocationCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, locations });
  return locations;
}

/** Writes all of `data` to `fd`, looping over short writes, and fails unless every byte landed. */
function writeAll(fd: number, data: Uint8Array): void {
  let written = 0;
  while (written < data.byteLength) {
    const n = writeSync(fd, data, written, data.byteLength - written);
    if (n <= 0) throw Object.assign(new Error(`short write: ${written} of ${data.byteLength} bytes`), { code: 'ENOSPC' });
    written += n;
  }
}

function fsyncFolder(dir: string): void {
  // Makes the rename durable; some file systems refuse fsync on a folder, which is harmless.
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}

function tempPathFor(abs: string): string {
  return join(dirname(abs), `.${basename(abs)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Fills a temporary file beside `abs` (the filler writes, fsyncs and checks its size), then renames
 * it into place; on any failure the temporary file goes and the cause becomes E_OUTPUT_UNWRITABLE.
 */
function replaceAtomically(abs: string, fill: (tmp: string) => void): void {
  ensureWritable(abs);
  const tmp = tempPathFor(abs);
  try {
    fill(tmp);
    assertReplaceable(abs);
    renameSync(tmp, abs);
    fsyncFolder(dirname(abs));
  } catch (e) {
    rmSync(tmp, { force: true });
    if (isQforgeError(e)) throw e;
    throw errOutputUnwritable(abs, writeFailureReason(e), e);
  }
}

const shortWrite = (message: string) => Object.assign(new Error(message), { code: 'ENOSPC' });

/**
 * Writes through a temporary file in the same folder: every byte written and counted, fsync'd,
 * then renamed into place. A short write (full disk) never replaces the target.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  replaceAtomically(resolve(path), (tmp) => {
    const fd = openSync(tmp, 'wx', 0o644);
    try {
      writeAll(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (statSync(tmp).size !== bytes.byteLength) throw shortWrite('the file on disk is shorter than what was written');
  });
}

/** Copies `source` to `path` with the same guarantees as writeFileAtomic, without holding it in memory. */
export function copyFileAtomic(source: string, path: string): void {
  replaceAtomically(resolve(path), (tmp) => {
    copyFileSync(source, tmp, constants.COPYFILE_EXCL);
    const expected = statSync(source).size;
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
      const size = fstatSync(fd).size;
      if (size !== expected) throw shortWrite(`copied ${size} of ${expected} bytes`);
    } finally {
      closeSync(fd);
    }
  });
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
  if (!st.isFile()) throw errNotRegularFile(abs, 'model', fileKind(st));
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
  const ref: ModelRef = { path: existsSync(abs) && statSync(abs).isDirectory() ? resolve(abs, 'model.json') : abs, format };
  // Shards are checked before anything reads them: a missing one is named, a FIFO is never opened.
  if (format === 'tfjs-layers' || format === 'tfjs-graph') {
    const folder = dirname(ref.path);
    let manifest: unknown;
    try {
      manifest = (JSON.parse(readFileSync(ref.path, 'utf8')) as { weightsManifest?: unknown }).weightsManifest;
    } catch {
      manifest = undefined;
    }
    if (!manifestShardPaths(manifest)) throw errModelCorrupt(ref.path, 'weightsManifest is not a list of groups, each with a list of shard paths');
    for (const p of tfjsShardPaths(ref.path)) {
      const shard = join(folder, p);
      resolveInsideFolder(shard, folder, 'weight shard', { missing: () => errModelCorrupt(ref.path, `weight shard ${shard} (listed in weightsManifest) does not exist`) });
    }
  } else if (format === 'onnx') {
    // External data named anywhere in the file (subgraphs included) is checked before any step reads or sizes it.
    for (const p of onnxExternalDataLocations(ref.path)) sideFileSize(ref.path, p, 'external data file');
  }
  return ref;
}

/** Size of a file a model names beside itself, under the one symlink policy; a missing one is named. */
function sideFileSize(modelPath: string, name: string, what: string): number {
  const folder = dirname(modelPath);
  return statSync(resolveInsideFolder(resolve(folder, name), folder, what, { missing: () => errModelCorrupt(modelPath, `${what} "${name}" does not exist`) })).size;
}

/**
 * Bytes a model occupies on disk: the file itself plus the weight shards a TensorFlow.js
 * model.json lists or an ONNX model's external data, so size ratios compare like with like.
 */
export function modelSizeBytes(model: ModelRef): number {
  let size = statSync(model.path).size;
  if (model.format === 'tfjs-layers' || model.format === 'tfjs-graph') {
    for (const p of tfjsShardPaths(model.path)) size += sideFileSize(model.path, p, 'weight shard');
  } else if (model.format === 'onnx') {
    // A model with external data is mostly its side file: sizes and ratios must count it.
    for (const p of onnxExternalDataLocations(model.path)) size += sideFileSize(model.path, p, 'external data file');
  }
  return size;
}
