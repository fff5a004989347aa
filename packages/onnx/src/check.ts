// Structural checks of a loaded graph: what ONNX Runtime refuses at session creation, found first and named by node.
import { errModelCorrupt } from '@qforge/core';
import { graphOuterReferences, subgraphsOf } from './graph';
import { DATA_TYPE_BYTES, DATA_TYPE_NAMES, DataType, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from './proto';

/** Float element types (float32, float16, float64, bfloat16). */
const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, 16]);
/** Integer, bool and string element types: never accepted where an operator's spec asks for floats. */
const NON_FLOAT_TYPES = new Set<number>([DataType.UINT8, DataType.INT8, DataType.UINT16, DataType.INT16, DataType.INT32, DataType.INT64, DataType.STRING, DataType.BOOL, DataType.UINT32, DataType.UINT64]);

/**
 * Standard operators whose listed inputs take float types only, in every opset (ONNX operator
 * specs): `all` means every input. Ops that gained integer support in some opset (Relu, PRelu,
 * Gemm, MatMul) are left out, so the check never refuses a model a runtime accepts.
 */
const FLOAT_ONLY_INPUTS: Record<string, number[] | 'all'> = {
  AveragePool: 'all',
  BatchNormalization: 'all',
  Celu: 'all',
  Conv: 'all',
  ConvTranspose: 'all',
  Cos: 'all',
  Dropout: [0, 1],
  Elu: 'all',
  Exp: 'all',
  Gelu: 'all',
  GlobalAveragePool: 'all',
  GlobalLpPool: 'all',
  GroupNormalization: 'all',
  GRU: [0, 1, 2, 3],
  HardSigmoid: 'all',
  HardSwish: 'all',
  InstanceNormalization: 'all',
  LayerNormalization: 'all',
  LeakyRelu: 'all',
  Log: 'all',
  LogSoftmax: 'all',
  LpNormalization: 'all',
  LpPool: 'all',
  LRN: 'all',
  LSTM: [0, 1, 2, 3],
  Mish: 'all',
  Reciprocal: 'all',
  RNN: [0, 1, 2, 3],
  Selu: 'all',
  Sigmoid: 'all',
  Sin: 'all',
  Softmax: 'all',
  Softplus: 'all',
  Softsign: 'all',
  Sqrt: 'all',
  Tanh: 'all',
  ThresholdedRelu: 'all',
};

/** Standard operators whose listed inputs share one type parameter `T` in every opset. */
const SAME_TYPE_INPUTS: Record<string, number[] | 'all'> = {
  Add: 'all',
  Concat: 'all',
  Conv: [0, 1, 2],
  ConvTranspose: [0, 1, 2],
  Div: 'all',
  Equal: 'all',
  Gemm: 'all',
  Greater: 'all',
  GreaterOrEqual: 'all',
  Less: 'all',
  LessOrEqual: 'all',
  MatMul: 'all',
  Max: 'all',
  Mean: 'all',
  Min: 'all',
  Mod: 'all',
  Mul: 'all',
  Sub: 'all',
  Sum: 'all',
  Where: [1, 2],
};

const typeName = (t: number) => DATA_TYPE_NAMES[t] ?? `type ${t}`;

/** How a node is named in messages: `"name" (OpType)`, or its position when it has no name. */
function nodeLabel(n: NodeProto, index: number): string {
  return `${n.name ? `"${n.name}"` : `#${index} (unnamed)`} (${n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.` : ''}${n.opType})`;
}

const isStandard = (n: NodeProto) => !n.domain || n.domain === 'ai.onnx';

const selected = (n: NodeProto, which: number[] | 'all') => n.input.map((name, i) => ({ name, i })).filter(({ name, i }) => name && (which === 'all' || which.includes(i)));

/**
 * Standard operators whose first output has the element type of one input, in every opset: the
 * input's index. Enough to follow float and integer tensors through a graph without full type inference.
 */
const SAME_TYPE_AS_INPUT: Record<string, number> = {
  ...Object.fromEntries(
    ('Abs Add AveragePool BatchNormalization Ceil Clip Concat Conv ConvTranspose Cos DepthToSpace Div Dropout Elu Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gemm ' +
      'GlobalAveragePool GlobalMaxPool HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu Log LogSoftmax LRN MatMul Max MaxPool Mean Min Mul Neg Pad Pow PRelu ' +
      'Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum Relu Reshape Resize Round Selu Sigmoid Sign Sin Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Unsqueeze Upsample')
      .split(' ')
      .map((op) => [op, 0]),
  ),
  Where: 1,
};

/**
 * The element type of a node's first output, where it follows from the node alone or from a typed
 * input: Constant, Cast, Shape/Size, and the operators above.
 */
function outputType(n: NodeProto, types: Map<string, number>): number | undefined {
  switch (n.opType) {
    case 'Constant': {
      const a = n.attribute[0];
      return a?.t?.dataType ?? (a?.name === 'value_float' || a?.name === 'value_floats' ? DataType.FLOAT : a?.name === 'value_int' || a?.name === 'value_ints' ? DataType.INT64 : undefined);
    }
    case 'Cast': {
      const to = n.attribute.find((a) => a.name === 'to')?.i;
      return to === undefined ? undefined : Number(to);
    }
    case 'Shape':
    case 'Size':
      return DataType.INT64;
    default: {
      const from = SAME_TYPE_AS_INPUT[n.opType];
      return from === undefined ? undefined : types.get(n.input[from]);
    }
  }
}

/** How many values a tensor holds in the typed field ONNX stores its element type in (not raw_data). */
function typedCount(t: TensorProto): number {
  switch (t.dataType) {
    case DataType.FLOAT:
      return t.floatData?.length ?? 0;
    case DataType.DOUBLE:
      return t.doubleData?.length ?? 0;
    case DataType.INT64:
      return t.int64Data?.length ?? 0;
    case DataType.UINT32:
    case DataType.UINT64:
      return t.uint64Data?.length ?? 0;
    default:
      return t.int32Data?.length ?? 0;
  }
}

/**
 * Why a tensor's stored data cannot be its dims (raw bytes or typed values of another count, or none
 * at all), or undefined. Strings and types without a fixed size are left alone.
 */
function dataMismatch(t: TensorProto): string | undefined {
  const bytes = DATA_TYPE_BYTES[t.dataType ?? 0];
  if (!bytes || t.dataLocation === 1) return undefined;
  const count = (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1);
  const shape = `[${(t.dims ?? []).join(',')}] ${typeName(t.dataType!)}`;
  const raw = t.rawData?.byteLength ?? 0;
  if (raw) return raw === count * bytes ? undefined : `holds ${raw} bytes of data, but ${shape} needs ${count * bytes}`;
  const typed = typedCount(t);
  if (!typed) return count ? `holds no data, but ${shape} needs ${count} values` : undefined;
  return typed !== count ? `holds ${typed} values, but ${shape} needs ${count}` : undefined;
}

/**
 * Refuses, as E_MODEL_CORRUPT naming the node and the tensor, a graph ONNX Runtime would refuse:
 * a node input or graph output nothing defines, a name defined twice, a cycle, a weight whose data
 * does not fit its dims, an integer tensor fed to a float-only operator, or known input types that
 * disagree where an operator needs one type. If/Loop/Scan bodies are checked too (the names they read from enclosing graphs are
 * defined there); their nodes must be in order, those of the main graph need not be (ONNX Runtime
 * sorts it).
 */
export function checkGraphStructure(proto: ModelProto, source: string): void {
  checkGraph(proto.graph, source, new Set(), new Map(), 'the graph');
}

/** `owner`: the If/Loop/Scan node whose body `g` is (undefined for the main graph). */
function checkGraph(g: GraphProto, source: string, outer: Set<string>, outerTypes: Map<string, number>, where: string, owner?: { node: NodeProto; index: number }): void {
  const fail = (n: NodeProto, index: number, reason: string, tensor?: string): never => {
    throw errModelCorrupt(source, `node ${nodeLabel(n, index)} in ${where} ${reason}`, { node: n.name || `#${index}`, opType: n.opType, ...(tensor !== undefined ? { tensor } : {}) });
  };
  // Where each name is defined in this graph: graph inputs and initializers may share a name (IR < 4).
  const declared = new Set<string>(['']);
  for (const i of g.input) declared.add(i.name);
  for (const t of g.initializer) declared.add(t.name);
  for (const s of g.sparseInitializer ?? []) if (s.values?.name) declared.add(s.values.name);
  const producer = new Map<string, number>();
  g.node.forEach((n, index) => {
    for (const o of n.output) {
      if (!o) continue;
      if (producer.has(o) || declared.has(o)) fail(n, index, `writes "${o}", which ${producer.has(o) ? `node ${nodeLabel(g.node[producer.get(o)!], producer.get(o)!)} also writes` : 'is already a graph input or initializer'}`, o);
      producer.set(o, index);
    }
  });
  const visible = (name: string) => declared.has(name) || producer.has(name) || outer.has(name);

  // Weights whose stored data does not fit their dims (cut raw data, a wrong dim): named by a node that reads them.
  for (const t of g.initializer) {
    const wrong = dataMismatch(t);
    if (!wrong) continue;
    const reader = g.node.findIndex((n) => n.input.includes(t.name));
    if (reader >= 0) fail(g.node[reader], reader, `reads initializer "${t.name}", which ${wrong}`, t.name);
    throw errModelCorrupt(source, `initializer "${t.name}" of ${where} ${wrong}`, { node: '<initializer>', opType: '', tensor: t.name });
  }
  g.node.forEach((n, index) => {
    for (const a of n.attribute) {
      const wrong = a.t ? dataMismatch(a.t) : undefined;
      if (wrong) fail(n, index, `has a tensor attribute "${a.name}" that ${wrong}`, n.output[0] ?? a.name);
    }
  });

  // Every name read is defined here or in an enclosing graph (a body may read outer values).
  const reads: string[][] = [];
  g.node.forEach((n, index) => {
    for (const i of n.input) if (i && !visible(i)) fail(n, index, `reads "${i}", which no node, initializer or graph input ${outer.size ? 'of this or an enclosing graph ' : ''}defines`, i);
    const mine = new Set(n.input.filter((i) => producer.has(i)));
    // What bodies read from here orders the node like an input; a name nobody defines is reported
    // below, when the body is checked, at the node inside that reads it.
    for (const sub of subgraphsOf(n)) for (const r of graphOuterReferences(sub)) if (producer.has(r)) mine.add(r);
    reads.push([...mine]);
  });
  for (const o of g.output) {
    const own = declared.has(o.name) || producer.has(o.name);
    if (own || (!owner && visible(o.name))) continue;
    const reason = visible(o.name)
      ? `returns "${o.name}", a value of an enclosing graph, directly as its output (ONNX Runtime needs an Identity node in the body between the two)`
      : `has "${o.name}" as an output, but no node, initializer or input defines it`;
    if (owner) throw errModelCorrupt(source, `${where} ${reason}`, { node: owner.node.name || `#${owner.index}`, opType: owner.node.opType, tensor: o.name });
    throw errModelCorrupt(source, `output "${o.name}" of ${where} is produced by no node, initializer or graph input`, { node: '<graph output>', opType: '', tensor: o.name });
  }

  // Cycles: Kahn's algorithm over the producers in this graph; a stuck node is followed back to its cycle.
  const pending = reads.map((r) => r.length);
  const waiting = new Map<number, number[]>();
  reads.forEach((r, consumer) => {
    for (const name of r) {
      const p = producer.get(name)!;
      const list = waiting.get(p);
      if (list) list.push(consumer);
      else waiting.set(p, [consumer]);
    }
  });
  const ready = pending.flatMap((c, i) => (c === 0 ? [i] : []));
  const order: number[] = [];
  while (ready.length) {
    const i = ready.pop()!;
    order.push(i);
    for (const c of waiting.get(i) ?? []) if (--pending[c] === 0) ready.push(c);
  }
  if (order.length < g.node.length) {
    let at = pending.findIndex((c) => c > 0);
    const path: number[] = [];
    while (!path.includes(at)) {
      path.push(at);
      // Some input of a stuck node comes from another stuck node: walking those edges must close a loop.
      at = reads[at].map((name) => producer.get(name)!).find((p) => pending[p] > 0)!;
    }
    // cycle[i] reads from cycle[i + 1]: data flows the other way round.
    const cycle = path.slice(path.indexOf(at));
    const flow = [cycle[0], ...cycle.slice(1).reverse(), cycle[0]];
    const via = reads[cycle[0]].find((name) => cycle.includes(producer.get(name)!))!;
    fail(g.node[cycle[0]], cycle[0], `is part of a cycle: ${flow.map((i) => nodeLabel(g.node[i], i)).join(' → ')} (it reads "${via}", which depends on its own output)`, via);
  }
  // ONNX Runtime sorts the main graph itself but refuses a body whose nodes are out of order.
  if (owner) {
    reads.forEach((r, index) => {
      const late = r.find((name) => producer.get(name)! > index);
      if (late !== undefined) fail(g.node[index], index, `reads "${late}" before node ${nodeLabel(g.node[producer.get(late)!], producer.get(late)!)} writes it (ONNX Runtime needs the nodes of a body in order)`, late);
    });
  }

  // Types ONNX Runtime checks before running anything, where they are known without inference:
  // declared inputs, initializers and constants, followed through the graph in order.
  const types = new Map(outerTypes);
  for (const i of g.input) if (i.type?.tensorType?.elemType) types.set(i.name, i.type.tensorType.elemType);
  for (const t of g.initializer) if (t.dataType) types.set(t.name, t.dataType);
  for (const sp of g.sparseInitializer ?? []) if (sp.values?.name && sp.values.dataType) types.set(sp.values.name, sp.values.dataType);
  for (const index of order) {
    const n = g.node[index];
    if (!isStandard(n)) continue;
    const floatOnly = FLOAT_ONLY_INPUTS[n.opType];
    if (floatOnly) {
      for (const { name, i } of selected(n, floatOnly)) {
        const t = types.get(name);
        if (t !== undefined && NON_FLOAT_TYPES.has(t)) fail(n, index, `takes float tensors, but its input ${i} "${name}" is ${typeName(t)}`, name);
      }
    }
    const same = SAME_TYPE_INPUTS[n.opType];
    if (same) {
      const typed = selected(n, same).filter(({ name }) => types.has(name));
      const first = typed[0];
      const other = typed.find(({ name }) => types.get(name) !== types.get(first.name));
      // Only the obvious: an integer type where another input is float or a different integer.
      if (other && !(FLOAT_TYPES.has(types.get(first.name)!) && FLOAT_TYPES.has(types.get(other.name)!))) {
        fail(n, index, `needs one type for its inputs, but input ${first.i} "${first.name}" is ${typeName(types.get(first.name)!)} and input ${other.i} "${other.name}" is ${typeName(types.get(other.name)!)}`, other.name);
      }
    }
    const t = n.output[0] ? outputType(n, types) : undefined;
    if (t !== undefined) types.set(n.output[0], t);
  }

  // Bodies see every name of this graph and of the graphs around it.
  const inner = new Set([...outer, ...declared, ...producer.keys()]);
  g.node.forEach((n, index) => {
    for (const sub of subgraphsOf(n)) checkGraph(sub, source, inner, types, `${sub.name ? `body "${sub.name}"` : 'a body'} of node ${nodeLabel(n, index)}`, { node: n, index });
  });
}
