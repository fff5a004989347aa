// Networks inside If branches (and Loop/Scan bodies): finding them, making their tensors visible
// to calibration, and running graph-local passes on each body as if it were a model of its own.
import { errUnsupported, type GraphChange, type NodeDecision } from '@qforge/core';
import { OP_QUANTIZERS, type OpRole } from './ops';
import { DataType, graphOuterReferences, makeNode, makeTensor, makeValueInfo, subgraphsOf, tensorAttr, type GraphProto, type ModelProto, type NodeProto } from '@qforge/onnx';

export interface SubgraphScope {
  /** The body itself. */
  graph: GraphProto;
  /** The node that holds it (If, Loop, Scan). */
  owner: NodeProto;
  /** The attribute it sits in (`then_branch`, `else_branch`, `body`). */
  attribute: string;
  /** The graph the owner sits in. */
  parent: GraphProto;
  /** `If_0/then_branch/…`, for reports. */
  path: string;
}

/** Every body in the model, outermost first. */
export function subgraphScopes(graph: GraphProto, prefix = ''): SubgraphScope[] {
  const out: SubgraphScope[] = [];
  for (const n of graph.node) {
    for (const a of n.attribute ?? []) {
      const bodies = a.g ? [a.g] : (a.graphs ?? []);
      for (const g of bodies) {
        const path = `${prefix}${n.name || n.output[0]}/${a.name}`;
        out.push({ graph: g, owner: n, attribute: a.name, parent: graph, path });
        out.push(...subgraphScopes(g, `${path}/`));
      }
    }
  }
  return out;
}

/** A model whose graph is one body: graph-local passes run on it unchanged. */
export function bodyAsModel(proto: ModelProto, body: GraphProto): ModelProto {
  return { ...proto, graph: body };
}

/** Names a body defines itself: its inputs, initializers and node outputs (not nested bodies'). */
function definedIn(g: GraphProto): Set<string> {
  return new Set([...g.input.map((i) => i.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)]);
}


/**
 * Runs `fn` on a body with the outer-scope values it reads listed as its inputs, so graph passes
 * written for top-level graphs (topological sort, producer lookups) see them as available values;
 * the inputs are removed again afterwards (If branches take no inputs).
 */
export function withOuterReadsAsInputs<T>(body: GraphProto, fn: () => T): T {
  const added = [...graphOuterReferences(body)].filter((n) => !body.input.some((i) => i.name === n)).map((name) => ({ name }));
  body.input.push(...added);
  try {
    return fn();
  } finally {
    const names = new Set(added.map((a) => a.name));
    body.input = body.input.filter((i) => !names.has(i.name));
  }
}

/** Graph-local preparation passes applied to every body, recorded as one change per pass. */
export function prepareBodies(proto: ModelProto, passes: ((p: ModelProto, changes: GraphChange[]) => void)[], changes: GraphChange[]): void {
  const scopes = subgraphScopes(proto.graph);
  if (!scopes.length) return;
  const inner: GraphChange[] = [];
  for (const s of scopes) for (const pass of passes) pass(bodyAsModel(proto, s.graph), inner);
  const byKind = new Map<string, number>();
  for (const c of inner) byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
  for (const [kind, count] of byKind) changes.push({ kind, detail: `inside ${scopes.length} subgraph bod${scopes.length === 1 ? 'y' : 'ies'} (If/Loop/Scan): ${count} × ${inner.find((c) => c.kind === kind)!.detail}` });
}

/**
 * A deep copy of the graph structure whose initializer lists are the original ones, shared: lifting
 * adds nodes and outputs, never weights, so the weights need no second copy in memory.
 */
function cloneWithoutWeights(proto: ModelProto): ModelProto {
  const graphs: GraphProto[] = [];
  const collect = (g: GraphProto) => {
    graphs.push(g);
    for (const n of g.node) subgraphsOf(n).forEach(collect);
  };
  collect(proto.graph);
  const saved = graphs.map((g) => g.initializer);
  for (const g of graphs) g.initializer = [];
  let copy: ModelProto;
  try {
    copy = structuredClone(proto);
  } finally {
    graphs.forEach((g, k) => (g.initializer = saved[k]));
  }
  // structuredClone walks in the same order, so the copies line up with the originals.
  const copies: GraphProto[] = [];
  const collectCopy = (g: GraphProto) => {
    copies.push(g);
    for (const n of g.node) subgraphsOf(n).forEach(collectCopy);
  };
  collectCopy(copy.graph);
  copies.forEach((g, k) => (g.initializer = saved[k]));
  return copy;
}

/**
 * Tensors produced inside If branches made visible as outputs of the whole model, for calibration.
 * Each tensor becomes an extra output of its branch and of the If (the other branch outputs an
 * empty float tensor, so both keep the same outputs); nested Ifs repeat this outward. An empty
 * fetched value means that branch did not run for the sample. Loop/Scan bodies are not lifted
 * (their outputs have loop semantics): their tensors are reported as not calibrated.
 */
export function liftBranchTensors(proto: ModelProto, tensors: string[]): { proto: ModelProto; fetch: Map<string, string>; unreachable: string[] } {
  const model = cloneWithoutWeights(proto);
  const scopes = subgraphScopes(model.graph);
  const wanted = new Set(tensors);
  const producer = new Map<string, SubgraphScope>();
  for (const s of scopes) {
    for (const name of definedIn(s.graph)) {
      if (!wanted.has(name)) continue;
      if (producer.has(name) && producer.get(name)!.graph !== s.graph) {
        throw errUnsupported('onnxruntime', 'this model', `tensor "${name}" is defined in two subgraphs (${producer.get(name)!.path}, ${s.path}); qforge cannot tell their ranges apart`);
      }
      producer.set(name, s);
    }
  }
  let counter = 0;
  const fresh = (base: string) => `${base}__qforge_${counter++}`;
  const fetch = new Map<string, string>();
  const unreachable: string[] = [];
  const lift = (name: string, scope: SubgraphScope | undefined): string | undefined => {
    if (!scope) return name;
    if (scope.owner.opType !== 'If' || (scope.owner.domain && scope.owner.domain !== 'ai.onnx')) return undefined;
    const sibling = scope.owner.attribute.find((a) => a.g && a.g !== scope.graph && (a.name === 'then_branch' || a.name === 'else_branch'))?.g;
    if (!sibling) return undefined;
    // Flattened, so both branches output rank-1 float tensors whatever T's rank (If's shape
    // inference refuses branches whose outputs differ in rank); statistics need only the values.
    const flatShape = fresh(`${name}_flat_shape`);
    const flat = fresh(`${name}_flat`);
    scope.graph.node.push(
      makeNode('Constant', [], [flatShape], flatShape, [tensorAttr('value', makeTensor(flatShape, [1], BigInt64Array.from([-1n])))]),
      makeNode('Reshape', [name, flatShape], [flat], flat),
    );
    scope.graph.output.push(makeValueInfo(flat, DataType.FLOAT));
    const empty = fresh(`${name}_empty`);
    sibling.node.push(makeNode('Constant', [], [empty], empty, [tensorAttr('value', makeTensor(empty, [0], new Float32Array(0)))]));
    sibling.output.push(makeValueInfo(empty, DataType.FLOAT));
    const lifted = fresh(name);
    scope.owner.output.push(lifted);
    const parentScope = scopes.find((s) => s.graph === scope.parent);
    return lift(lifted, parentScope);
  };
  for (const t of tensors) {
    const top = lift(t, producer.get(t));
    if (top === undefined) unreachable.push(t);
    else fetch.set(t, top);
  }
  return { proto: model, fetch, unreachable };
}

// Read from the registry when first needed: the registry's modules import preparation, which imports this file.
const typesOf = (...roles: OpRole[]) => new Set(OP_QUANTIZERS.filter((q) => roles.includes(q.role)).flatMap((q) => q.opTypes));
let opSets: { float: Set<string>; moves: Set<string>; weighted: Set<string> } | undefined;
function registryTypes() {
  opSets ??= {
    // Ops whose inputs and outputs are float: the weighted families and float-only activations.
    float: new Set([...typesOf('weighted'), 'Relu', 'Sigmoid', 'Tanh', 'HardSigmoid', 'LeakyRelu', 'Softmax']),
    // Ops that keep their input's type (the pass-through families): floatness flows through them.
    moves: typesOf('pass-through'),
    weighted: typesOf('weighted', 'recurrent'),
  };
  return opSets;
}

/**
 * Tensors of a body known to be float without running it: inputs and outputs of float-only ops,
 * and what moves through Reshape/Transpose/… from or into them. A lifted tensor must be float
 * (the other branch stands in an empty float tensor), so only these are calibrated in bodies.
 */
export function floatTensorsOf(g: GraphProto): Set<string> {
  const { float, moves } = registryTypes();
  const out = new Set<string>();
  for (const n of g.node) {
    if (!float.has(n.opType) || (n.domain && n.domain !== 'ai.onnx')) continue;
    out.add(n.input[0]);
    if (n.opType === 'MatMul' || n.opType === 'Gemm') out.add(n.input[1]);
    out.add(n.output[0]);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of g.node) {
      if (!moves.has(n.opType)) continue;
      if (out.has(n.input[0]) !== out.has(n.output[0])) {
        out.add(n.input[0]);
        out.add(n.output[0]);
        changed = true;
      }
    }
  }
  out.delete('');
  return out;
}

/** Calibration candidates inside If branches (Loop/Scan bodies are not calibrated). */
export function branchCalibrationTensors(proto: ModelProto, select: (p: ModelProto) => string[]): string[] {
  const out = new Set<string>();
  const scopes = subgraphScopes(proto.graph);
  // Lifting works outward through If nodes only: an If inside a Loop/Scan body is not reachable.
  const reachable = (s: SubgraphScope | undefined): boolean => !s || (s.owner.opType === 'If' && reachable(scopes.find((x) => x.graph === s.parent)));
  for (const s of scopes) {
    if (!reachable(s)) continue;
    const floats = floatTensorsOf(s.graph);
    for (const t of withOuterReadsAsInputs(s.graph, () => select(bodyAsModel(proto, s.graph)))) if (floats.has(t)) out.add(t);
  }
  return [...out];
}

/** Names defined anywhere below the top graph. */
export function scopedNames(graph: GraphProto): Set<string> {
  const out = new Set<string>();
  for (const s of subgraphScopes(graph)) for (const n of definedIn(s.graph)) out.add(n);
  return out;
}

export interface BodyResult {
  decisions: NodeDecision[];
  changes: GraphChange[];
}

/**
 * Runs a quantizer on every subgraph body as a model of its own (outer-scope values visible as
 * inputs). `kinds` limits which owners' bodies are processed: static quantization needs ranges,
 * which calibration collects inside If branches only.
 */
export function quantizeBodies(proto: ModelProto, kinds: readonly string[], each: (body: ModelProto, scope: SubgraphScope) => BodyResult): BodyResult {
  const result: BodyResult = { decisions: [], changes: [] };
  for (const s of subgraphScopes(proto.graph)) {
    if (!kinds.includes(s.owner.opType)) {
      for (const n of s.graph.node) {
        if (registryTypes().weighted.has(n.opType)) {
          result.decisions.push({ node: n.name || n.output[0], opType: n.opType, quantized: false, reason: `inside the ${s.attribute} of ${s.owner.opType} ${s.owner.name || s.owner.output[0]}: this mode does not reach ${s.owner.opType} bodies` });
        }
      }
      continue;
    }
    const r = withOuterReadsAsInputs(s.graph, () => each(bodyAsModel(proto, s.graph), s));
    result.decisions.push(...r.decisions);
    result.changes.push(...r.changes.map((c) => ({ ...c, detail: `${c.detail} (in ${s.path})` })));
  }
  return result;
}

/** Renames a value everywhere a body sees it: definitions, reads, the body's outputs, nested bodies. */
function renameInBody(g: GraphProto, from: string, to: string): void {
  for (const t of g.initializer) if (t.name === from) t.name = to;
  for (const o of g.output) if (o.name === from) o.name = to;
  for (const n of g.node) {
    n.input = n.input.map((i) => (i === from ? to : i));
    n.output = n.output.map((o) => (o === from ? to : o));
    for (const sub of subgraphsOf(n)) renameInBody(sub, from, to);
  }
}

/**
 * Quantizing each body on its own can define a name its enclosing scopes define too (`y_quantized`
 * for an outer tensor `y` quantized outside and inside): ONNX requires single assignment across
 * scopes, so such definitions in bodies get fresh names.
 */
export function uniquifyBodyNames(proto: ModelProto): number {
  const everything = new Set<string>();
  const collect = (g: GraphProto) => {
    for (const n of definedIn(g)) everything.add(n);
    for (const n of g.node) subgraphsOf(n).forEach(collect);
  };
  collect(proto.graph);
  let renamed = 0;
  const visit = (g: GraphProto, outer: Set<string>) => {
    for (const n of g.node) {
      for (const body of subgraphsOf(n)) {
        for (const name of definedIn(body)) {
          if (!outer.has(name)) continue;
          let fresh = `${name}__b`;
          for (let k = 1; everything.has(fresh); k++) fresh = `${name}__b${k}`;
          everything.add(fresh);
          renameInBody(body, name, fresh);
          renamed++;
        }
        visit(body, new Set([...outer, ...definedIn(body)]));
      }
    }
  };
  visit(proto.graph, definedIn(proto.graph));
  return renamed;
}

/**
 * Float weights stored outside the one body that uses them (an initializer of the main graph read
 * only inside one If branch) move into that body, so its quantizer sees them as its own constants
 * and stores them int8 there.
 */
export function sinkInitializersIntoBodies(proto: ModelProto, changes: GraphChange[]): void {
  let moved = 0;
  const visit = (g: GraphProto) => {
    const ownReads = new Set(g.node.flatMap((n) => n.input));
    const outputs = new Set(g.output.map((o) => o.name));
    const keep = g.initializer.filter((t) => {
      if (t.dataType !== DataType.FLOAT || t.dims.length < 2 || ownReads.has(t.name) || outputs.has(t.name)) return true;
      const readers = g.node.flatMap((n) => subgraphsOf(n)).filter((b) => graphOuterReferences(b).has(t.name));
      // Shared by several bodies, it stays where it is: copies would duplicate the weight.
      if (readers.length !== 1) return true;
      readers[0].initializer.push(t);
      moved++;
      return false;
    });
    g.initializer = keep;
    for (const n of g.node) subgraphsOf(n).forEach(visit);
  };
  visit(proto.graph);
  if (moved) changes.push({ kind: 'sink-initializer', detail: `${moved} weight(s) read only inside If/Loop bodies moved into the bodies that read them` });
}
