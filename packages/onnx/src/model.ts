// Loading and saving ONNX models, including tensors stored in external data files.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { assertRegularFile, errInvalidOption, errModelCorrupt, errModelNotFound, errPathOutsideFolder, resolveInsideFolder, writeFileAtomic } from '@qforge/core';
import { checkGraphStructure } from './check';
import { decodeModelProto, encodeModelProto, type GraphProto, type Int64, type ModelProto, type NodeProto, type TensorProto, type TypeProto, type UnknownField } from './proto';

/** protobuf messages above this size cannot be encoded in one piece (the 2 GiB limit, with margin). */
export const MAX_INLINE_BYTES = 1.8 * 1024 ** 3;

export interface LoadedModel {
  proto: ModelProto;
  /** Where it was loaded from (absolute), for resolving external data. */
  path?: string;
  /** Tensors whose data came from external files: name → location. */
  externalTensors: Record<string, string>;
  /** The file's bytes as read (initializers decode as views into them, so keeping them is free): hash these instead of reading the file again. */
  bytes?: Uint8Array;
  /** Fields the pinned onnx.proto does not know (from a newer ONNX or a private extension): they are not written back on save. */
  unknownFields: UnknownField[];
}

/** Reads and writes are cut to this size: one call cannot move 2 GiB, and a tensor may exceed it. */
const IO_CHUNK_BYTES = 1 << 30;

/** Reads `length` bytes at `offset` into a new buffer: only that tensor's bytes, never the whole file. */
function readRange(fd: number, offset: number, length: number): Uint8Array {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, Math.min(IO_CHUNK_BYTES, length - done), offset + done);
    if (n === 0) throw new Error(`external data ended after ${done} of ${length} bytes`);
    done += n;
  }
  return out;
}

function writeAllSync(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.byteLength) {
    const n = writeSync(fd, data, done, Math.min(IO_CHUNK_BYTES, data.byteLength - done));
    // A write that makes no progress would loop forever: the device is full.
    if (n <= 0) throw Object.assign(new Error(`short write: ${done} of ${data.byteLength} bytes`), { code: 'ENOSPC' });
    done += n;
  }
}

/**
 * Reads external data into raw_data tensor by tensor, each at its offset (a side file of any size
 * works, and memory holds the tensors, never a copy of the file), under core's one symlink policy: a location that escapes the
 * model's folder (absolute, `..`, or a symlink out) or names anything but a regular file is refused
 * before it is opened — in every graph, subgraph, sparse initializer, tensor attribute and function.
 */
function resolveExternalData(proto: ModelProto, modelPath: string): Record<string, string> {
  const folder = dirname(modelPath);
  const loaded: Record<string, string> = {};
  const fds = new Map<string, number>();
  const visit = (tensors: TensorProto[]) => {
    for (const t of tensors) {
      if (t.dataLocation !== 1) continue;
      const entries = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
      const location = entries.location;
      if (!location) throw errModelCorrupt(modelPath, `tensor ${t.name} is external but has no location`);
      if (isAbsolute(location)) throw errPathOutsideFolder(location, folder, `external data of tensor ${t.name}`);
      const file = resolveInsideFolder(resolve(folder, location), folder, `external data of tensor ${t.name}`, {
        missing: () => errModelCorrupt(modelPath, `external data file "${location}" of tensor ${t.name} is missing`),
      });
      const offset = Number(entries.offset ?? 0);
      const size = statSync(file).size;
      const length = entries.length !== undefined ? Number(entries.length) : size - offset;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) throw errModelCorrupt(modelPath, `external data of tensor ${t.name} has offset "${entries.offset}" / length "${entries.length}", not byte counts`);
      if (offset + length > size) throw errModelCorrupt(modelPath, `external data of tensor ${t.name} lies beyond the end of "${location}"`);
      let fd = fds.get(file);
      if (fd === undefined) fds.set(file, (fd = openSync(file, 'r')));
      t.rawData = readRange(fd, offset, length);
      t.dataLocation = 0;
      t.externalData = [];
      loaded[t.name] = location;
    }
  };
  const sparse = (ts: { values?: unknown; indices?: unknown }[] | undefined): TensorProto[] => (ts ?? []).flatMap((x) => [x.values, x.indices].filter(Boolean) as TensorProto[]);
  const visitNodes = (nodes: NodeProto[]) => {
    for (const n of nodes) {
      for (const a of n.attribute ?? []) {
        visit([...(a.t ? [a.t] : []), ...(a.tensors ?? []), ...sparse([...(a.sparseTensor ? [a.sparseTensor] : []), ...(a.sparseTensors ?? [])])]);
        for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) visitGraph(g);
      }
    }
  };
  const visitGraph = (g: GraphProto) => {
    visit(g.initializer ?? []);
    visit(sparse(g.sparseInitializer));
    visitNodes(g.node ?? []);
  };
  try {
    visitGraph(proto.graph);
    for (const f of proto.functions ?? []) visitNodes((f.node ?? []) as NodeProto[]);
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return loaded;
}

/** Every graph of the model: the main graph and the bodies of If/Loop/Scan (attributes g and graphs), recursively. */
export function* allGraphs(graph: GraphProto): Generator<GraphProto> {
  yield graph;
  for (const n of graph.node) for (const a of n.attribute) for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) yield* allGraphs(g);
}

/** Fields typed `number` must hold one: a bigint there cannot describe a real tensor or version. */
function requireSafe(value: Int64 | undefined, what: string, source: string): void {
  if (typeof value === 'bigint') throw errModelCorrupt(source, `${what} is ${value}, beyond the integers qforge can index with (2^53)`);
}

function checkType(t: TypeProto | undefined, where: string, source: string): void {
  for (const d of t?.tensorType?.shape?.dim ?? []) requireSafe(d.dimValue, `a dimension of ${where}`, source);
}

/** Gives a graph the lists qforge edits (absent repeated fields encode to nothing, so this changes no bytes). */
function normalizeGraph(g: GraphProto, source: string): void {
  g.node ??= [];
  g.initializer ??= [];
  g.input ??= [];
  g.output ??= [];
  g.valueInfo ??= [];
  for (const t of g.initializer) {
    t.dims ??= [];
    for (const d of t.dims) requireSafe(d, `a dimension of initializer ${t.name}`, source);
  }
  for (const v of [...g.input, ...g.output, ...g.valueInfo]) checkType(v.type, v.name, source);
  for (const n of g.node) {
    n.input ??= [];
    n.output ??= [];
    n.attribute ??= [];
    for (const a of n.attribute) {
      for (const t of [...(a.t ? [a.t] : []), ...(a.tensors ?? [])]) {
        t.dims ??= [];
        for (const d of t.dims) requireSafe(d, `a dimension of a tensor attribute of ${n.name || n.opType}`, source);
      }
      for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) normalizeGraph(sub, source);
    }
  }
}

/** Decodes an ONNX model exactly: int64 values as numbers when safe, bigints otherwise. */
export function decodeModel(bytes: Uint8Array, source = '<bytes>'): ModelProto {
  return decodeModelWithUnknown(bytes, source).proto;
}

function decodeModelWithUnknown(bytes: Uint8Array, source: string): { proto: ModelProto; unknownFields: UnknownField[] } {
  let decoded: { proto: ModelProto; unknownFields: UnknownField[] };
  try {
    decoded = decodeModelProto(bytes);
  } catch (e) {
    throw errModelCorrupt(source, `not a valid ONNX protobuf (${(e as Error).message})`);
  }
  const { proto } = decoded;
  if (!proto.graph || !proto.opsetImport?.length) throw errModelCorrupt(source, 'no graph or no opset_import: this is not an ONNX model');
  requireSafe(proto.irVersion, 'ir_version', source);
  for (const o of proto.opsetImport) requireSafe(o.version, `the version of opset "${o.domain ?? ''}"`, source);
  normalizeGraph(proto.graph, source);
  if (!proto.graph.output.length) throw errModelCorrupt(source, 'the graph has no outputs');
  return decoded;
}

/**
 * Reads an ONNX model with its external data, and checks its graph (`checkGraphStructure`): a model
 * ONNX Runtime would refuse fails here as E_MODEL_CORRUPT naming the node and tensor.
 */
export function loadModel(path: string): LoadedModel {
  const abs = resolve(path);
  if (!existsSync(abs)) throw errModelNotFound(abs);
  assertRegularFile(abs, 'model');
  const bytes = readFileSync(abs);
  const { proto, unknownFields } = decodeModelWithUnknown(bytes, abs);
  const externalTensors = resolveExternalData(proto, abs);
  checkGraphStructure(proto, abs);
  return { proto, path: abs, externalTensors, bytes, unknownFields };
}

/** Encodes exactly what {@link decodeModel} gave (bigints included); refuses values that do not fit the schema. */
export function encodeModel(proto: ModelProto): Uint8Array {
  return encodeModelProto(proto);
}

function tensorBytes(t: TensorProto): number {
  return t.rawData?.byteLength ?? 0;
}

export interface SaveOptions {
  /** 'auto' moves large tensors to a side file only when the model would exceed protobuf's 2 GiB. */
  externalData?: 'auto' | 'always' | 'never';
  /** Tensors at least this large go external when external data is used. @defaultValue 1024 */
  externalThresholdBytes?: number;
  /** The side file's name beside the model (a plain file name). @defaultValue `<model file>.data` */
  externalDataName?: string;
}

/**
 * Saves atomically. Large models get their big tensors in `<file>.data` (or `externalDataName`) beside the model,
 * written first, so a crash never leaves a model pointing at missing data.
 */
export async function saveModel(proto: ModelProto, path: string, options: SaveOptions = {}): Promise<{ bytes: number; externalFile?: string }> {
  const abs = resolve(path);
  const total = proto.graph.initializer.reduce((a, t) => a + tensorBytes(t), 0);
  const external = options.externalData === 'always' || (options.externalData !== 'never' && total > MAX_INLINE_BYTES);
  if (!external) {
    const bytes = encodeModel(proto);
    await writeFileAtomic(abs, bytes);
    return { bytes: bytes.byteLength };
  }
  const threshold = options.externalThresholdBytes ?? 1024;
  const dataName = options.externalDataName ?? `${basename(abs)}.data`;
  if (basename(dataName) !== dataName || dataName === '.' || dataName === '..') throw errInvalidOption('externalDataName', `"${dataName}" is not a file name`, 'The side file lies beside the model: give a plain file name such as model_q4.onnx_data.');
  const dataPath = join(dirname(abs), dataName);
  let offset = 0;
  const copy: ModelProto = { ...proto, graph: { ...proto.graph, initializer: proto.graph.initializer.map((t) => ({ ...t })) } };
  // Tensor by tensor into a temporary file renamed into place: the side file is never assembled in memory.
  const tmp = `${dataPath}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`;
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    const padding = new Uint8Array(4096);
    for (const t of copy.graph.initializer) {
      const n = tensorBytes(t);
      if (n < threshold || !t.rawData) continue;
      // Align each tensor to 4 KiB so runtimes can memory-map it.
      const pad = (4096 - (offset % 4096)) % 4096;
      if (pad) writeAllSync(fd, padding.subarray(0, pad));
      offset += pad;
      writeAllSync(fd, t.rawData);
      t.externalData = [
        { key: 'location', value: dataName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(n) },
      ];
      t.dataLocation = 1;
      delete t.rawData;
      offset += n;
    }
    fsyncSync(fd);
    closeSync(fd);
    if (statSync(tmp).size !== offset) throw Object.assign(new Error('the external data file on disk is shorter than what was written'), { code: 'ENOSPC' });
    renameSync(tmp, dataPath);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(tmp, { force: true });
    throw e;
  }
  const bytes = encodeModel(copy);
  await writeFileAtomic(abs, bytes);
  return { bytes: bytes.byteLength + offset, externalFile: join(dirname(abs), dataName) };
}
