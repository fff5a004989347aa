// Graph queries and edits: producers, consumers, topological order, typed tensor access.
import type { TensorInfo } from '@qforge/core';
import { errModelCorrupt } from '@qforge/core';
import { DATA_TYPE_NAMES, DataType, type AttributeProto, type GraphProto, type Int64, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from './proto';

export function opsetVersion(model: ModelProto, domain = ''): number {
  const entry = model.opsetImport.find((o) => (o.domain ?? '') === domain || (domain === '' && o.domain === 'ai.onnx'));
  return entry ? Number(entry.version) : 0;
}

export function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

/**
 * An int64 as a number for arithmetic. Values beyond ±(2^53 − 1) — the INT64_MAX/INT64_MIN
 * sentinels of Slice and friends — clamp to ±Number.MAX_SAFE_INTEGER, which keeps their meaning
 * ("to the end") for any real tensor. Code that writes the value back uses {@link attrInt64s}.
 */
export function int64ToNumber(v: Int64): number {
  if (typeof v === 'number') return v;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
  if (v < -BigInt(Number.MAX_SAFE_INTEGER)) return -Number.MAX_SAFE_INTEGER;
  return Number(v);
}

/** An int attribute as a number (clamped, see {@link int64ToNumber}). */
export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.i !== undefined ? int64ToNumber(a.i) : fallback;
}

export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.f !== undefined ? a.f : fallback;
}

/** An ints attribute as numbers (clamped, see {@link int64ToNumber}). */
export function attrInts(node: NodeProto, name: string): number[] | undefined {
  return attr(node, name)?.ints?.map(int64ToNumber);
}

/** An ints attribute exactly as stored, for writing it back (into an int64 tensor, another attribute). */
export function attrInt64s(node: NodeProto, name: string): Int64[] | undefined {
  const ints = attr(node, name)?.ints;
  return ints ? [...ints] : undefined;
}

export function attrString(node: NodeProto, name: string): string | undefined {
  const s = attr(node, name)?.s;
  return s ? Buffer.from(s).toString('utf8') : undefined;
}

export function valueInfoToTensorInfo(v: ValueInfoProto): TensorInfo {
  const t = v.type?.tensorType;
  return {
    name: v.name,
    dtype: DATA_TYPE_NAMES[t?.elemType ?? 0] ?? `type${t?.elemType}`,
    shape: (t?.shape?.dim ?? []).map((d) => (d.dimValue !== undefined && Number(d.dimValue) > 0 ? Number(d.dimValue) : d.dimParam ?? null)),
  };
}

/** Graph inputs that are real inputs, not initializers listed as inputs (IR < 4 style). */
export function graphInputs(graph: GraphProto): TensorInfo[] {
  const inits = new Set(graph.initializer.map((t) => t.name));
  return graph.input.filter((i) => !inits.has(i.name)).map(valueInfoToTensorInfo);
}

export function graphOutputs(graph: GraphProto): TensorInfo[] {
  return graph.output.map(valueInfoToTensorInfo);
}

/** The graphs a node holds as attributes (If branches, Loop and Scan bodies). */
export function subgraphsOf(node: NodeProto): GraphProto[] {
  const out: GraphProto[] = [];
  for (const a of node.attribute ?? []) {
    if (a.g) out.push(a.g);
    if (a.graphs) out.push(...a.graphs);
  }
  return out;
}

/** Names a graph reads but does not define: values it takes from the enclosing scope. */
export function graphOuterReferences(graph: GraphProto): Set<string> {
  const defined = new Set<string>(['']);
  for (const i of graph.input ?? []) defined.add(i.name);
  for (const t of graph.initializer ?? []) defined.add(t.name);
  for (const t of graph.sparseInitializer ?? []) if (t.values?.name) defined.add(t.values.name);
  for (const n of graph.node ?? []) for (const o of n.output ?? []) defined.add(o);
  const refs = new Set<string>();
  for (const n of graph.node ?? []) {
    for (const i of n.input ?? []) if (!defined.has(i)) refs.add(i);
    for (const r of subgraphOuterReferences(n)) if (!defined.has(r)) refs.add(r);
  }
  // A body may return an outer value as it is.
  for (const o of graph.output ?? []) if (!defined.has(o.name)) refs.add(o.name);
  return refs;
}

/**
 * Outer-scope names the node's bodies read, recursively: to the enclosing graph these are inputs
 * of the node as real as `node.input`, so passes that look for consumers must count them.
 */
export function subgraphOuterReferences(node: NodeProto): Set<string> {
  const refs = new Set<string>();
  for (const g of subgraphsOf(node)) for (const r of graphOuterReferences(g)) refs.add(r);
  return refs;
}

/** What a node reads: its inputs, then the outer values its bodies read. */
export function nodeReads(node: NodeProto): string[] {
  const direct = node.input.filter(Boolean);
  const implicit = [...subgraphOuterReferences(node)].filter((r) => !direct.includes(r));
  return implicit.length ? [...direct, ...implicit] : direct;
}

/**
 * Producer and consumer index over a graph; rebuild it after edits. A node whose If/Loop/Scan body
 * reads a tensor counts as its consumer (it does not list it in `input`).
 */
export class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();
  readonly initializers = new Map<string, TensorProto>();
  readonly graphOutputNames: Set<string>;

  constructor(readonly graph: GraphProto) {
    for (const t of graph.initializer) this.initializers.set(t.name, t);
    for (const n of graph.node) {
      for (const o of n.output) if (o) this.producer.set(o, n);
      for (const i of new Set(nodeReads(n))) {
        const list = this.consumers.get(i) ?? [];
        list.push(n);
        this.consumers.set(i, list);
      }
    }
    this.graphOutputNames = new Set(graph.output.map((o) => o.name));
  }

  consumersOf(tensor: string): NodeProto[] {
    return this.consumers.get(tensor) ?? [];
  }

  /** A constant: an initializer or the output of a Constant node. */
  constantTensor(name: string): TensorProto | undefined {
    const init = this.initializers.get(name);
    if (init) return init;
    const p = this.producer.get(name);
    if (p && p.opType === 'Constant') return attr(p, 'value')?.t;
    return undefined;
  }
}

/**
 * Kahn's algorithm; throws E_MODEL_CORRUPT on cycles or inputs nobody produces. Values an If/Loop/Scan
 * body reads from outside order the node like inputs. `outerScope`: names the enclosing graph
 * provides, when sorting a body.
 */
export function topologicalSort(graph: GraphProto, outerScope: Iterable<string> = []): NodeProto[] {
  const available = new Set<string>([...graph.input.map((i) => i.name), ...graph.initializer.map((t) => t.name), '', ...outerScope]);
  const pending = new Map<NodeProto, number>();
  const waiting = new Map<string, NodeProto[]>();
  const ready: NodeProto[] = [];
  for (const n of graph.node) {
    const missing = nodeReads(n).filter((i) => !available.has(i));
    pending.set(n, new Set(missing).size);
    for (const i of new Set(missing)) {
      const l = waiting.get(i) ?? [];
      l.push(n);
      waiting.set(i, l);
    }
    if (missing.length === 0) ready.push(n);
  }
  const order: NodeProto[] = [];
  while (ready.length) {
    const n = ready.shift()!;
    order.push(n);
    for (const o of n.output) {
      if (available.has(o)) continue;
      available.add(o);
      for (const c of waiting.get(o) ?? []) {
        const left = pending.get(c)! - 1;
        pending.set(c, left);
        if (left === 0) ready.push(c);
      }
    }
  }
  if (order.length !== graph.node.length) {
    const stuck = graph.node.find((n) => !order.includes(n))!;
    throw errModelCorrupt('<graph>', `node ${stuck.name ?? stuck.opType} has inputs that no node produces, or the graph has a cycle`);
  }
  return order;
}

/** Reads a tensor's values as float32 (from raw_data or the typed fields). */
/** One IEEE 754 binary16 value (as its 16 bits) to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

let HALF_TABLE: Float32Array | undefined;
/** All 65536 half-float values, decoded once: a lookup per weight instead of arithmetic. */
function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  return HALF_TABLE;
}

export function tensorToFloat32(t: TensorProto): Float32Array {
  const n = (t.dims ?? []).reduce((a, b) => a * Number(b), 1);
  const raw = t.rawData;
  switch (t.dataType) {
    case DataType.FLOAT:
      if (raw && raw.byteLength) {
        // Copy only when raw_data is misaligned for a Float32Array view.
        if (raw.byteOffset % 4 === 0) return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
        return new Float32Array(Uint8Array.from(raw).buffer);
      }
      return Float32Array.from(t.floatData ?? new Array(n).fill(0));
    case DataType.DOUBLE:
      if (raw && raw.byteLength) return Float32Array.from(new Float64Array(Uint8Array.from(raw).buffer));
      return Float32Array.from(t.doubleData ?? []);
    case DataType.INT64:
      if (raw && raw.byteLength) return Float32Array.from(new BigInt64Array(Uint8Array.from(raw).buffer), Number);
      return Float32Array.from(t.int64Data ?? [], Number);
    case DataType.INT32:
      if (raw && raw.byteLength) return Float32Array.from(new Int32Array(Uint8Array.from(raw).buffer));
      return Float32Array.from(t.int32Data ?? []);
    case DataType.INT8:
      if (raw && raw.byteLength) return Float32Array.from(new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength));
      return Float32Array.from(t.int32Data ?? []);
    case DataType.UINT8:
      if (raw && raw.byteLength) return Float32Array.from(raw);
      return Float32Array.from(t.int32Data ?? []);
    case DataType.FLOAT16: {
      // IEEE half floats: raw little-endian bytes, or the bit patterns in int32_data.
      let bits: Uint16Array;
      if (raw && raw.byteLength) bits = raw.byteOffset % 2 === 0 ? new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2) : new Uint16Array(Uint8Array.from(raw).buffer);
      else bits = Uint16Array.from(t.int32Data ?? []);
      const table = halfTable();
      const out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
      return out;
    }
    default:
      throw errModelCorrupt('<tensor>', `tensor ${t.name} has data type ${DATA_TYPE_NAMES[t.dataType] ?? t.dataType}, which qforge cannot read as numbers`);
  }
}

/** An integer tensor's values exactly (int64 as {@link Int64}); other types through float32. */
export function tensorToInt64s(t: TensorProto): Int64[] {
  const raw = t.rawData;
  const exact = (v: bigint): Int64 => (v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  if (t.dataType === DataType.INT64) {
    if (raw && raw.byteLength) return Array.from(new BigInt64Array(Uint8Array.from(raw).buffer), exact);
    return [...(t.int64Data ?? [])];
  }
  if (t.dataType === DataType.INT32 && !(raw && raw.byteLength)) return [...(t.int32Data ?? [])];
  if (t.dataType === DataType.INT32) return Array.from(new Int32Array(Uint8Array.from(raw!).buffer));
  return Array.from(tensorToFloat32(t));
}

/** Reads an integer tensor (shapes, axes) as numbers (clamped, see {@link int64ToNumber}). */
export function tensorToInts(t: TensorProto): number[] {
  return tensorToInt64s(t).map(int64ToNumber);
}

type Typed = Float32Array | Int8Array | Uint8Array | Int32Array | Int16Array | Uint16Array;

const TYPED_DT: [new (...a: never[]) => Typed, number][] = [
  [Float32Array, DataType.FLOAT],
  [Int8Array, DataType.INT8],
  [Uint8Array, DataType.UINT8],
  [Int32Array, DataType.INT32],
  [Int16Array, DataType.INT16],
  [Uint16Array, DataType.UINT16],
];

/** Builds an initializer from a typed array (stored as raw_data, little-endian). */
export function makeTensor(name: string, dims: number[], data: Typed | BigInt64Array): TensorProto {
  let dataType: number = DataType.INT64;
  if (!(data instanceof BigInt64Array)) {
    const hit = TYPED_DT.find(([ctor]) => data instanceof ctor);
    if (!hit) throw new TypeError('unsupported typed array');
    dataType = hit[1];
  }
  return { name, dims, dataType, rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) };
}

export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, attrs: AttributeProto[] = [], domain?: string): NodeProto {
  const n: NodeProto = { opType, input: inputs, output: outputs, name, attribute: attrs };
  if (domain) n.domain = domain;
  return n;
}

export const intAttr = (name: string, i: Int64): AttributeProto => ({ name, type: 2, i });
export const floatAttr = (name: string, f: number): AttributeProto => ({ name, type: 1, f });
export const intsAttr = (name: string, ints: Int64[]): AttributeProto => ({ name, type: 7, ints });
export const tensorAttr = (name: string, t: TensorProto): AttributeProto => ({ name, type: 4, t });

/** A name not yet used by any tensor or node in the graph or in any body inside it (a new name must not shadow one). */
export function uniqueNamer(graph: GraphProto): (base: string) => string {
  const used = new Set<string>();
  const visit = (g: GraphProto) => {
    for (const t of g.initializer ?? []) used.add(t.name);
    for (const i of g.input ?? []) used.add(i.name);
    for (const n of g.node ?? []) {
      if (n.name) used.add(n.name);
      for (const o of n.output ?? []) used.add(o);
      for (const i of n.input ?? []) used.add(i);
      subgraphsOf(n).forEach(visit);
    }
  };
  visit(graph);
  return (base: string) => {
    let name = base;
    for (let k = 1; used.has(name); k++) name = `${base}_${k}`;
    used.add(name);
    return name;
  };
}

export function makeValueInfo(name: string, elemType: number, shape?: (number | string | null)[]): ValueInfoProto {
  const v: ValueInfoProto = { name, type: { tensorType: { elemType } } };
  if (shape) v.type!.tensorType!.shape = { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : d ? { dimParam: d } : {})) };
  return v;
}

/** A shallow copy of the model that also returns `tensors` (ONNX Runtime accepts untyped outputs). */
export function withExtraOutputs(proto: ModelProto, tensors: string[]): ModelProto {
  const existing = new Set(proto.graph.output.map((o) => o.name));
  const extra = [...new Set(tensors)].filter((t) => !existing.has(t)).map((name) => ({ name }));
  return { ...proto, graph: { ...proto.graph, output: [...proto.graph.output, ...extra] } };
}
