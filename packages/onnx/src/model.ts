// Loading and saving ONNX models, including tensors stored in external data files.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { errModelCorrupt, errModelNotFound, writeFileAtomic } from '@qforge/core';
import { ModelProtoType, type ModelProto, type TensorProto } from './proto';

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
}

function insideFolder(folder: string, candidate: string): boolean {
  const rel = relative(folder, candidate);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Reads external data into raw_data, refusing locations that escape the model's folder. */
function resolveExternalData(proto: ModelProto, modelPath: string): Record<string, string> {
  const folder = realpathSync(dirname(modelPath));
  const loaded: Record<string, string> = {};
  const visit = (tensors: TensorProto[]) => {
    for (const t of tensors) {
      if (t.dataLocation !== 1) continue;
      const entries = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
      const location = entries.location;
      if (!location) throw errModelCorrupt(modelPath, `tensor ${t.name} is external but has no location`);
      const file = resolve(folder, location);
      if (isAbsolute(location) || !insideFolder(folder, file)) throw errModelCorrupt(modelPath, `external data location "${location}" of tensor ${t.name} escapes the model's folder`);
      if (!existsSync(file)) throw errModelCorrupt(modelPath, `external data file "${location}" of tensor ${t.name} is missing`);
      if (!insideFolder(folder, realpathSync(file))) throw errModelCorrupt(modelPath, `external data file "${location}" links outside the model's folder`);
      const offset = Number(entries.offset ?? 0);
      const size = statSync(file).size;
      const length = entries.length !== undefined ? Number(entries.length) : size - offset;
      if (offset < 0 || offset + length > size) throw errModelCorrupt(modelPath, `external data of tensor ${t.name} lies beyond the end of "${location}"`);
      const buf = readFileSync(file);
      t.rawData = buf.subarray(offset, offset + length);
      t.dataLocation = 0;
      t.externalData = [];
      loaded[t.name] = location;
    }
  };
  visit(proto.graph.initializer);
  for (const n of proto.graph.node) for (const a of n.attribute) if (a.t) visit([a.t]);
  return loaded;
}

export function decodeModel(bytes: Uint8Array, source = '<bytes>'): ModelProto {
  let proto: ModelProto;
  try {
    const msg = ModelProtoType.decode(bytes);
    proto = ModelProtoType.toObject(msg, { defaults: false, arrays: true, longs: Number }) as ModelProto;
  } catch (e) {
    throw errModelCorrupt(source, `not a valid ONNX protobuf (${(e as Error).message})`);
  }
  if (!proto.graph || !proto.opsetImport?.length) throw errModelCorrupt(source, 'no graph or no opset_import: this is not an ONNX model');
  const g = proto.graph;
  g.node ??= [];
  g.initializer ??= [];
  g.input ??= [];
  g.output ??= [];
  g.valueInfo ??= [];
  for (const n of g.node) {
    n.input ??= [];
    n.output ??= [];
    n.attribute ??= [];
  }
  if (!g.output.length) throw errModelCorrupt(source, 'the graph has no outputs');
  return proto;
}

export function loadModel(path: string): LoadedModel {
  const abs = resolve(path);
  if (!existsSync(abs)) throw errModelNotFound(abs);
  const bytes = readFileSync(abs);
  const proto = decodeModel(bytes, abs);
  const externalTensors = resolveExternalData(proto, abs);
  return { proto, path: abs, externalTensors, bytes };
}

export function encodeModel(proto: ModelProto): Uint8Array {
  const err = ModelProtoType.verify(proto);
  if (err) throw errModelCorrupt('<in memory>', `model does not encode: ${err}`);
  return ModelProtoType.encode(ModelProtoType.fromObject(proto)).finish();
}

function tensorBytes(t: TensorProto): number {
  return t.rawData?.byteLength ?? 0;
}

export interface SaveOptions {
  /** 'auto' moves large tensors to a side file only when the model would exceed protobuf's 2 GiB. */
  externalData?: 'auto' | 'always' | 'never';
  /** Tensors at least this large go external when external data is used. @defaultValue 1024 */
  externalThresholdBytes?: number;
}

/**
 * Saves atomically. Large models get their big tensors in `<file>.data` beside the model,
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
  const dataName = `${basename(abs)}.data`;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const copy: ModelProto = { ...proto, graph: { ...proto.graph, initializer: proto.graph.initializer.map((t) => ({ ...t })) } };
  for (const t of copy.graph.initializer) {
    const n = tensorBytes(t);
    if (n < threshold || !t.rawData) continue;
    // Align each tensor to 4 KiB so runtimes can memory-map it.
    const pad = (4096 - (offset % 4096)) % 4096;
    if (pad) chunks.push(new Uint8Array(pad));
    offset += pad;
    chunks.push(t.rawData);
    t.externalData = [
      { key: 'location', value: dataName },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(n) },
    ];
    t.dataLocation = 1;
    delete t.rawData;
    offset += n;
  }
  await writeFileAtomic(join(dirname(abs), dataName), Buffer.concat(chunks));
  const bytes = encodeModel(copy);
  await writeFileAtomic(abs, bytes);
  return { bytes: bytes.byteLength + offset, externalFile: join(dirname(abs), dataName) };
}
