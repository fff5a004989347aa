// Model preparation before calibration: make real exported graphs quantizable, recording each change.
import { errModelCorrupt, type GraphChange } from '@qforge/core';
import {
  DataType,
  GraphIndex,
  attr,
  attrFloat,
  attrInt,
  attrInts,
  intAttr,
  makeNode,
  makeTensor,
  nodeReads,
  opsetVersion,
  tensorToFloat32,
  uniqueNamer,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from '@qforge/onnx';
import { upgradeOpsetTo, upgradeShapeQuestions, type ObservedShapes, type OpsetRefusal } from './opset-upgrade';
import { foldConstantExpressions, transposeConstant } from './fold-constants';
import { bodyAsModel, prepareBodies, sinkInitializersIntoBodies, subgraphScopes } from './subgraphs';

export type { ObservedShapes, OpsetRefusal } from './opset-upgrade';

export interface PreparationResult {
  proto: ModelProto;
  changes: GraphChange[];
  /** The opset after preparation; per-axis quantization needs ≥ 13. */
  opset: number;
  /** Why the opset could not be raised to 13, naming the op (below 10 static quantization is impossible). */
  opsetRefusal?: OpsetRefusal;
}

/** `Constant` nodes become initializers, so weights can be found and quantized like any other. */
export function constantsToInitializers(proto: ModelProto, changes: GraphChange[]): void {
  const g = proto.graph;
  const keep: NodeProto[] = [];
  let moved = 0;
  for (const n of g.node) {
    if (n.opType === 'Constant' && (!n.domain || n.domain === 'ai.onnx')) {
      const t = attr(n, 'value')?.t;
      const vf = attr(n, 'value_float');
      const vfs = attr(n, 'value_floats');
      const vi = attr(n, 'value_int');
      const vis = attr(n, 'value_ints');
      let tensor: TensorProto | undefined;
      if (t) tensor = { ...t, name: n.output[0] };
      else if (vf?.f !== undefined) tensor = makeTensor(n.output[0], [], Float32Array.from([vf.f]));
      else if (vfs?.floats) tensor = makeTensor(n.output[0], [vfs.floats.length], Float32Array.from(vfs.floats));
      else if (vi?.i !== undefined) tensor = makeTensor(n.output[0], [], BigInt64Array.from([BigInt(vi.i)]));
      else if (vis?.ints) tensor = makeTensor(n.output[0], [vis.ints.length], BigInt64Array.from(vis.ints.map((x) => BigInt(x))));
      if (tensor) {
        g.initializer.push(tensor);
        moved++;
        continue;
      }
    }
    keep.push(n);
  }
  g.node = keep;
  if (moved) changes.push({ kind: 'constant-to-initializer', detail: `${moved} Constant node(s) became initializers` });
}


/**
 * Models exported to compute in float16 (inputs cast to half, half weights) are raised to float32
 * before quantization: int8 kernels take float32 around them, and calibration needs float32
 * statistics. Verification still compares against the original float16 model.
 */
export function upcastFloat16(proto: ModelProto, changes: GraphChange[]): void {
  const g = proto.graph;
  let weights = 0;
  let casts = 0;
  g.initializer = g.initializer.map((t) => {
    if (t.dataType !== DataType.FLOAT16) return t;
    weights++;
    return makeTensor(t.name, (t.dims ?? []).map(Number), tensorToFloat32(t));
  });
  if (!weights) return;
  for (const n of g.node) {
    for (const a of n.attribute ?? []) {
      if (n.opType === 'Cast' && a.name === 'to' && Number(a.i) === DataType.FLOAT16) {
        a.i = DataType.FLOAT;
        casts++;
      }
      if (a.t && a.t.dataType === DataType.FLOAT16) a.t = { ...makeTensor(a.t.name ?? '', (a.t.dims ?? []).map(Number), Float32Array.from(tensorToFloat32(a.t))) };
    }
  }
  for (const v of [...g.input, ...g.output, ...(g.valueInfo ?? [])]) {
    if (v.type?.tensorType?.elemType === DataType.FLOAT16) v.type.tensorType.elemType = DataType.FLOAT;
  }
  changes.push({ kind: 'upcast-float16', detail: `float16 model raised to float32 for quantization: ${weights} weight(s), ${casts} Cast(s) to float16 now to float32` });
}



/**
 * Gemm forms without an int8 kernel become MatMul (+ Add), with the same result: `beta = 0`
 * (C ignored, as torch's `mm` exports) becomes MatMul; a computed C (torch's `addmm`) becomes
 * MatMul → Add, so the product can run in int8 while the sum stays float. Needs transA = 0 and
 * alpha = 1; a transposed B must be a stored constant (it is transposed once, here).
 */
export function simplifyGemm(proto: ModelProto, changes: GraphChange[]): void {
  const g = proto.graph;
  const idx = new GraphIndex(g);
  const name = uniqueNamer(g);
  const legacyBroadcast = opsetVersion(proto) < 7;
  const out: NodeProto[] = [];
  const done: string[] = [];
  for (const n of g.node) {
    const c = n.input[2];
    const beta = attrFloat(n, 'beta', 1);
    const dropC = beta === 0;
    const splitC = !!c && !idx.initializers.has(c) && beta === 1;
    if (n.opType !== 'Gemm' || (n.domain && n.domain !== 'ai.onnx') || !(dropC || splitC) || attrInt(n, 'transA', 0) !== 0 || attrFloat(n, 'alpha', 1) !== 1) {
      out.push(n);
      continue;
    }
    let b = n.input[1];
    if (attrInt(n, 'transB', 0)) {
      const w = idx.initializers.get(b);
      if (!w || w.dataType !== DataType.FLOAT) {
        out.push(n);
        continue;
      }
      const { dims, data } = transposeConstant(w);
      b = name(`${b}_transposed`);
      g.initializer.push(makeTensor(b, dims, data));
    }
    const nodeName = n.name || n.output[0];
    if (dropC || !c) {
      out.push(makeNode('MatMul', [n.input[0], b], [n.output[0]], nodeName));
      done.push(`${nodeName} (beta = 0) → MatMul`);
    } else {
      const product = name(`${n.output[0]}_product`);
      out.push(makeNode('MatMul', [n.input[0], b], [product], nodeName));
      // Opset < 7 Add broadcasts only when told to; Gemm-6 broadcast C the same trailing-aligned way.
      const attrs = legacyBroadcast && attrInt(n, 'broadcast', 0) ? [intAttr('broadcast', 1)] : [];
      out.push(makeNode('Add', [product, c], [n.output[0]], name(`${nodeName}_add_c`), attrs));
      done.push(`${nodeName} (computed C) → MatMul + Add`);
    }
  }
  g.node = out;
  if (done.length) changes.push({ kind: 'gemm-to-matmul', detail: done.slice(0, 5).join('; ') + (done.length > 5 ? `; … (${done.length})` : '') });
}

/** Conv followed by BatchNormalization (inference mode) folds into the Conv's weights and bias. */
export function foldBatchNorm(proto: ModelProto, changes: GraphChange[]): void {
  const g = proto.graph;
  const idx = new GraphIndex(g);
  const name = uniqueNamer(g);
  const removed = new Set<NodeProto>();
  for (const bn of g.node) {
    if (bn.opType !== 'BatchNormalization' || bn.output.filter(Boolean).length !== 1) continue;
    const conv = idx.producer.get(bn.input[0]);
    if (!conv || conv.opType !== 'Conv' || idx.consumersOf(conv.output[0]).length !== 1 || idx.graphOutputNames.has(conv.output[0])) continue;
    const w = idx.initializers.get(conv.input[1]);
    const b = conv.input[2] ? idx.initializers.get(conv.input[2]) : undefined;
    const [scale, beta, mean, variance] = bn.input.slice(1, 5).map((i) => idx.initializers.get(i));
    if (!w || (conv.input[2] && !b) || !scale || !beta || !mean || !variance) continue;
    if (idx.consumersOf(conv.input[1]).length !== 1) continue; // shared weights: folding would change the other user
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const wData = tensorToFloat32(w);
    const co = Number(w.dims[0]);
    const per = wData.length / co;
    const s = tensorToFloat32(scale);
    const be = tensorToFloat32(beta);
    const m = tensorToFloat32(mean);
    const v = tensorToFloat32(variance);
    const bData = b ? tensorToFloat32(b) : new Float32Array(co);
    const newW = new Float32Array(wData.length);
    const newB = new Float32Array(co);
    for (let c = 0; c < co; c++) {
      const f = s[c] / Math.sqrt(v[c] + eps);
      for (let k = 0; k < per; k++) newW[c * per + k] = wData[c * per + k] * f;
      newB[c] = (bData[c] - m[c]) * f + be[c];
    }
    const wName = name(`${conv.input[1]}_bnfolded`);
    const bName = name(`${conv.name || 'conv'}_bias_bnfolded`);
    g.initializer.push(makeTensor(wName, w.dims.map(Number), newW), makeTensor(bName, [co], newB));
    conv.input[1] = wName;
    conv.input[2] = bName;
    conv.output[0] = bn.output[0];
    removed.add(bn);
    changes.push({ kind: 'fold-batchnorm', node: conv.name, detail: `BatchNormalization ${bn.name ?? ''} folded into Conv ${conv.name ?? ''}` });
  }
  if (removed.size) g.node = g.node.filter((n) => !removed.has(n));
}

/** Per-output-channel values of a constant that broadcasts against an NCHW conv output, or undefined. */
function perChannel(t: TensorProto, channels: number): Float32Array | undefined {
  const dims = t.dims.map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  const v = tensorToFloat32(t);
  if (n === 1) return new Float32Array(channels).fill(v[0]);
  if (n !== channels) return undefined;
  // Accept [C,1,1], [1,C,1,1] and [C] only when C sits on the channel axis of a rank-4 output.
  const rank = dims.length;
  const cAxis = rank === 4 ? 1 : rank === 3 ? 0 : -1;
  if (cAxis < 0 || dims[cAxis] !== channels) return undefined;
  return Float32Array.from(v);
}

/**
 * Conv followed by Mul and/or Add with per-channel constants (learnable affine blocks, BN
 * exported as Mul+Add) folds into the Conv, so the quantized conv output has one clean range.
 */
export function foldAffineIntoConv(proto: ModelProto, changes: GraphChange[]): void {
  const g = proto.graph;
  const name = uniqueNamer(g);
  let folded = 0;
  for (let pass = 0; pass < 4; pass++) {
    const idx = new GraphIndex(g);
    const removed = new Set<NodeProto>();
    for (const conv of g.node) {
      if (conv.opType !== 'Conv' || removed.has(conv)) continue;
      const w = idx.initializers.get(conv.input[1]);
      if (!w || w.dims.length !== 4 || idx.consumersOf(conv.input[1]).length !== 1) continue;
      const y = conv.output[0];
      const consumers = idx.consumersOf(y);
      if (consumers.length !== 1 || idx.graphOutputNames.has(y)) continue;
      const op = consumers[0];
      if (op.opType !== 'Mul' && op.opType !== 'Add') continue;
      const other = op.input[0] === y ? op.input[1] : op.input[0];
      const c = idx.initializers.get(other);
      const co = Number(w.dims[0]);
      const k = c && perChannel(c, co);
      if (!k) continue;
      const b = conv.input[2] ? idx.initializers.get(conv.input[2]) : undefined;
      if (conv.input[2] && !b) continue;
      const bias = b ? Float32Array.from(tensorToFloat32(b)) : new Float32Array(co);
      let wData = tensorToFloat32(w);
      if (op.opType === 'Mul') {
        const per = wData.length / co;
        const nw = new Float32Array(wData.length);
        for (let ch = 0; ch < co; ch++) {
          for (let i = 0; i < per; i++) nw[ch * per + i] = wData[ch * per + i] * k[ch];
          bias[ch] *= k[ch];
        }
        wData = nw;
        const wName = name(`${conv.input[1]}_affine`);
        g.initializer.push(makeTensor(wName, w.dims.map(Number), wData));
        conv.input[1] = wName;
      } else {
        for (let ch = 0; ch < co; ch++) bias[ch] += k[ch];
      }
      const bName = name(`${conv.name || 'conv'}_bias_affine`);
      g.initializer.push(makeTensor(bName, [co], bias));
      conv.input[2] = bName;
      conv.output[0] = op.output[0];
      removed.add(op);
      folded++;
    }
    if (!removed.size) break;
    g.node = g.node.filter((n) => !removed.has(n));
  }
  if (folded) changes.push({ kind: 'fold-affine', detail: `${folded} per-channel Mul/Add node(s) folded into the preceding Conv` });
}

/**
 * Model metadata key: activations that equalization rescaled, each with its per-channel factor
 * (equalized = float × factor, channel axis 1). Per-layer errors divide it back out, so an
 * equalized model's layers are compared with the float model's on the same scale.
 */
export const EQUALIZED_ACTIVATIONS = 'qforge.equalized-activations';

export function readEqualizedActivations(proto: ModelProto): [string, number[]][] {
  const entry = proto.metadataProps?.find((e) => e.key === EQUALIZED_ACTIVATIONS);
  if (!entry?.value) return [];
  try {
    return Object.entries(JSON.parse(entry.value) as Record<string, number[]>);
  } catch (e) {
    throw errModelCorrupt('the candidate model', `metadata ${EQUALIZED_ACTIVATIONS} is not JSON (${(e as Error).message})`);
  }
}

/**
 * Cross-layer equalization (Nagel et al., 2019): for Conv → (Relu | MaxPool)* → Conv, scale output
 * channel c of the first conv down by s_c and the matching input channel of the second up by s_c,
 * with s_c = sqrt(r1_c / r2_c), so both see the same per-channel weight range. Relu and MaxPool
 * commute with positive per-channel scaling, so the float function is unchanged; per-tensor and
 * depthwise weights then quantize with far less error.
 */
export function equalizeCrossLayer(proto: ModelProto, changes: GraphChange[]): void {
  const g = proto.graph;
  const name = uniqueNamer(g);
  const pairs = new Set<string>();
  // Activations between the two convs change by a per-channel factor; verify undoes it (see EQUALIZED_ACTIVATIONS).
  const factors = new Map<string, Float64Array>(readEqualizedActivations(proto).map(([t, f]) => [t, Float64Array.from(f)]));
  // A few passes let chains (A → B → C) settle; each pass rescales every pair once.
  for (let pass = 0; pass < 3; pass++) {
    const idx = new GraphIndex(g);
    let changed = 0;
    for (const c1 of g.node) {
      if (c1.opType !== 'Conv') continue;
      const w1 = idx.initializers.get(c1.input[1]);
      if (!w1 || w1.dims.length !== 4 || idx.consumersOf(c1.input[1]).length !== 1) continue;
      // Walk a single-consumer chain of scale-commuting ops to the next Conv.
      let t = c1.output[0];
      const between = [t];
      let c2: NodeProto | undefined;
      for (let hops = 0; hops < 4; hops++) {
        const cons = idx.consumersOf(t);
        if (cons.length !== 1 || idx.graphOutputNames.has(t)) break;
        const n = cons[0];
        if (n.opType === 'Conv' && n.input[0] === t) {
          c2 = n;
          break;
        }
        if (n.opType !== 'Relu' && n.opType !== 'MaxPool') break;
        t = n.output[0];
        between.push(t);
      }
      if (!c2) continue;
      const w2 = idx.initializers.get(c2.input[1]);
      if (!w2 || w2.dims.length !== 4 || idx.consumersOf(c2.input[1]).length !== 1) continue;
      const co = Number(w1.dims[0]);
      const groups2 = attrInt(c2, 'group', 1);
      const cin2 = Number(w2.dims[1]);
      const co2 = Number(w2.dims[0]);
      const depthwise = groups2 === co && cin2 === 1 && co2 === co;
      if (!depthwise && !(groups2 === 1 && cin2 === co)) continue;
      const a = Float32Array.from(tensorToFloat32(w1));
      const bq = Float32Array.from(tensorToFloat32(w2));
      const per1 = a.length / co;
      const k2 = bq.length / (co2 * cin2);
      const r1 = new Float64Array(co);
      const r2 = new Float64Array(co);
      for (let c = 0; c < co; c++) for (let i = 0; i < per1; i++) r1[c] = Math.max(r1[c], Math.abs(a[c * per1 + i]));
      for (let o = 0; o < co2; o++) {
        for (let ci = 0; ci < cin2; ci++) {
          const c = depthwise ? o : ci;
          for (let j = 0; j < k2; j++) r2[c] = Math.max(r2[c], Math.abs(bq[(o * cin2 + ci) * k2 + j]));
        }
      }
      const s = new Float64Array(co);
      for (let c = 0; c < co; c++) s[c] = r1[c] > 0 && r2[c] > 0 ? Math.sqrt(r1[c] / r2[c]) : 1;
      for (let c = 0; c < co; c++) for (let i = 0; i < per1; i++) a[c * per1 + i] /= s[c];
      for (let o = 0; o < co2; o++) {
        for (let ci = 0; ci < cin2; ci++) {
          const c = depthwise ? o : ci;
          for (let j = 0; j < k2; j++) bq[(o * cin2 + ci) * k2 + j] *= s[c];
        }
      }
      const b1 = c1.input[2] ? idx.initializers.get(c1.input[2]) : undefined;
      if (c1.input[2] && !b1) continue;
      if (b1) {
        const bias = Float32Array.from(tensorToFloat32(b1)).map((v, c) => v / s[c]);
        const bName = name(`${c1.input[2]}_cle`);
        g.initializer.push(makeTensor(bName, [co], bias));
        c1.input[2] = bName;
      }
      const n1 = name(`${c1.input[1]}_cle`);
      const n2 = name(`${c2.input[1]}_cle`);
      g.initializer.push(makeTensor(n1, w1.dims.map(Number), a), makeTensor(n2, w2.dims.map(Number), bq));
      c1.input[1] = n1;
      c2.input[1] = n2;
      pairs.add(`${c1.name ?? c1.output[0]}→${c2.name ?? c2.output[0]}`);
      for (const x of between) {
        const f = factors.get(x) ?? new Float64Array(co).fill(1);
        for (let c = 0; c < co; c++) f[c] /= s[c];
        factors.set(x, f);
      }
      changed++;
    }
    if (!changed) break;
  }
  if (factors.size) {
    proto.metadataProps = [...(proto.metadataProps ?? []).filter((e) => e.key !== EQUALIZED_ACTIVATIONS), { key: EQUALIZED_ACTIVATIONS, value: JSON.stringify(Object.fromEntries([...factors].map(([k, f]) => [k, Array.from(f)]))) }];
  }
  if (pairs.size) changes.push({ kind: 'equalize', detail: `cross-layer equalization rescaled ${pairs.size} Conv pair(s): ${[...pairs].slice(0, 5).join(', ')}${pairs.size > 5 ? ', …' : ''}` });
  else changes.push({ kind: 'equalize', detail: 'cross-layer equalization found no Conv → Relu/MaxPool → Conv pair to rescale' });
}

/** Initializers nobody uses any more (after folding) are dropped so the output is not padded with them. */
export function dropUnusedInitializers(proto: ModelProto): number {
  const g = proto.graph;
  // If/Loop/Scan bodies read outer initializers without listing them as node inputs.
  const used = new Set<string>(g.node.flatMap(nodeReads));
  for (const o of g.output) used.add(o.name);
  const before = g.initializer.length;
  const dropped = new Set(g.initializer.filter((t) => !used.has(t.name)).map((t) => t.name));
  g.initializer = g.initializer.filter((t) => !dropped.has(t.name));
  // IR < 4 models list initializers as graph inputs too; a dropped one must not become a required feed.
  g.input = g.input.filter((i) => !dropped.has(i.name));
  return before - g.initializer.length;
}

/**
 * Raises the default-domain opset to `target` (13: per-axis Q/DQ needs it), rewriting the ops
 * whose signature or meaning changed on the way (see opset-upgrade.ts). Returns the refusal,
 * naming the op, when the graph cannot be upgraded safely.
 */
export function upgradeOpset(proto: ModelProto, shapes: ObservedShapes, changes: GraphChange[], target = 13): OpsetRefusal | undefined {
  return upgradeOpsetTo(proto, shapes, changes, target);
}

/** The tensors whose runtime shapes preparation needs (for the opset upgrade). */
export function shapeQuestions(proto: ModelProto): string[] {
  return upgradeShapeQuestions(proto);
}

/**
 * A copy to try the opset upgrade on. The upgrade rewrites nodes and the opset and only appends
 * initializers, so weights are shared rather than copied (a deep copy of a large model costs more
 * than the whole preparation).
 */
function upgradeTrial(proto: ModelProto): ModelProto {
  return { ...proto, opsetImport: structuredClone(proto.opsetImport), graph: { ...proto.graph, node: structuredClone(proto.graph.node), initializer: [...proto.graph.initializer] } };
}

/** Preparation up to (not including) the opset upgrade: needs no shapes. */
export function prepareGraph(proto: ModelProto, opts: { equalize?: boolean } = {}): GraphChange[] {
  const changes: GraphChange[] = [];
  constantsToInitializers(proto, changes);
  upcastFloat16(proto, changes);
  // Weights inside If/Loop bodies are stored the same ways (Constant nodes) and move into the
  // bodies that read them; then every constant expression folds, top graph and bodies alike.
  prepareBodies(proto, [constantsToInitializers], changes);
  sinkInitializersIntoBodies(proto, changes);
  foldConstantExpressions(proto, changes);
  simplifyGemm(proto, changes);
  foldBatchNorm(proto, changes);
  foldAffineIntoConv(proto, changes);
  if (opts.equalize) equalizeCrossLayer(proto, changes);
  for (const s of subgraphScopes(proto.graph)) dropUnusedInitializers(bodyAsModel(proto, s.graph));
  const dropped = dropUnusedInitializers(proto);
  if (dropped) changes.push({ kind: 'drop-unused', detail: `${dropped} unused initializer(s) removed` });
  return changes;
}

/** QuantizeLinear/DequantizeLinear exist from opset 10: an older graph must reach it to be quantized statically. */
export const QDQ_MIN_OPSET = 10;

/**
 * Raises the opset to 13 for per-axis parameters, on a copy first: a refused upgrade leaves the
 * graph exactly as it was. A graph older than opset 10 that cannot reach 13 is raised to 10 where
 * it can (per-tensor Q/DQ then). Returns why 13 was refused, if it was.
 */
export function upgradeForPerAxis(proto: ModelProto, shapes: ObservedShapes, changes: GraphChange[]): OpsetRefusal | undefined {
  const from = opsetVersion(proto);
  if (from >= 13) return undefined;
  const attempt = (target: number) => {
    const trial = upgradeTrial(proto);
    const trialChanges: GraphChange[] = [];
    const refusal = upgradeOpset(trial, shapes, trialChanges, target);
    if (!refusal) {
      Object.assign(proto, trial);
      changes.push(...trialChanges);
    }
    return refusal;
  };
  const refusal = attempt(13);
  if (!refusal) return undefined;
  if (from >= QDQ_MIN_OPSET) {
    changes.push({ kind: 'opset-kept', node: refusal.node, detail: `${refusal.reason}; kept opset ${from}, weights use per-tensor scales` });
    return refusal;
  }
  const minimal = attempt(QDQ_MIN_OPSET);
  if (!minimal) changes.push({ kind: 'opset-kept', node: refusal.node, detail: `${refusal.reason}; raised to opset ${QDQ_MIN_OPSET} only, weights use per-tensor scales` });
  else changes.push({ kind: 'opset-kept', node: minimal.node, detail: `${minimal.reason}; kept opset ${from}, which has no QuantizeLinear` });
  return minimal ?? refusal;
}

export function prepareModel(
  proto: ModelProto,
  shapes: ObservedShapes,
  opts: { needPerAxis: boolean; equalize?: boolean },
): PreparationResult & { perAxisBlockedBy?: string } {
  const changes = prepareGraph(proto, opts);
  const refusal = opts.needPerAxis ? upgradeForPerAxis(proto, shapes, changes) : undefined;
  return { proto, changes, opset: opsetVersion(proto), perAxisBlockedBy: refusal?.reason, opsetRefusal: refusal };
}

/**
 * Preparation for calibration without a separate shape-probing run. Only the opset upgrade needs
 * shapes (Softmax-family axes, legacy broadcasts); it renames nothing and never changes a value,
 * so calibration can run on the graph before the upgrade while its first run answers the shape
 * questions. The tensors calibrated are those the upgraded graph would quantize as well as those
 * the kept graph would, so either outcome finds its ranges; `finish` then applies the real decision.
 */
export function prepareForCalibration(proto: ModelProto, opts: { equalize?: boolean } = {}) {
  const questions = shapeQuestions(proto);
  const changes = prepareGraph(proto, opts);
  // The upgrade as it goes when every Softmax-family axis is the last one (the common case).
  const needsUpgrade = opsetVersion(proto) < 13;
  const optimistic = needsUpgrade ? upgradeTrial(proto) : proto;
  const optimisticChanges: GraphChange[] = [];
  const lastAxis: ObservedShapes = new Map();
  for (const n of proto.graph.node) {
    if (!['Softmax', 'LogSoftmax', 'Hardmax'].includes(n.opType) || !questions.includes(n.input[0])) continue;
    const axis = attrInt(n, 'axis', 1);
    lastAxis.set(n.input[0], new Array(axis >= 0 ? axis + 1 : 1).fill(1));
  }
  const optimisticBlock = needsUpgrade ? upgradeOpset(optimistic, lastAxis, optimisticChanges) : undefined;
  // ONNX Runtime has no kernels for some opset-6 ops (Gemm-6, Add-6 …), so calibration runs on an
  // upgraded graph: the final one when no shape question is open, else opset 11 (no rule up to 11
  // depends on Softmax axes). Both keep every tensor name and value.
  let runnable = proto;
  if (needsUpgrade && !optimisticBlock && !questions.length) runnable = optimistic;
  else if (opsetVersion(proto) < 11) {
    const trial = upgradeTrial(proto);
    if (!upgradeOpset(trial, new Map(), [], 11)) runnable = trial;
  }
  return {
    /** The graph to calibrate on (ONNX Runtime runs it; same tensors as the prepared graph). */
    proto: runnable,
    questions,
    /** Tensors to calibrate: what either outcome of the upgrade quantizes. */
    candidates(select: (p: ModelProto) => string[]): string[] {
      return [...new Set([...select(proto), ...(needsUpgrade && !optimisticBlock ? select(optimistic) : [])])];
    },
    /** The prepared graph quantize will see, given the shapes observed in the first run. */
    finish(shapes: ObservedShapes): PreparationResult {
      const all = [...changes];
      if (!needsUpgrade) return { proto, changes: all, opset: opsetVersion(proto) };
      if (!optimisticBlock && !blocksOnShapes(proto, shapes)) {
        all.push(...optimisticChanges);
        return { proto: optimistic, changes: all, opset: opsetVersion(optimistic) };
      }
      const refusal = upgradeForPerAxis(proto, shapes, all);
      return { proto, changes: all, opset: opsetVersion(proto), opsetRefusal: refusal };
    },
  };
}
/** Whether an observed Softmax-family input shape makes the opset-13 upgrade change meaning. */
function blocksOnShapes(proto: ModelProto, shapes: ObservedShapes): boolean {
  if (opsetVersion(proto) >= 13) return false;
  return proto.graph.node.some((n) => {
    if ((n.domain && n.domain !== 'ai.onnx') || !['Softmax', 'LogSoftmax', 'Hardmax'].includes(n.opType)) return false;
    const dims = shapes.get(n.input[0]);
    if (!dims) return true;
    const axis = attrInt(n, 'axis', 1);
    return (axis < 0 ? axis + dims.length : axis) !== dims.length - 1;
  });
}
