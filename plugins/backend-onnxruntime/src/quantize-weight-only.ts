// Weight-only quantization: MatMul weights → ONNX Runtime's block-wise `MatMulNBits` (4 or 8 bits), by round-to-nearest or GPTQ.
import { DEFAULT_CALIBRATION_SAMPLES, errInvalidOption, errUnsupported, throwIfAborted, type Dataset, type GraphChange, type ModelRef, type NodeDecision, type QuantizeOptions, type QuantizeResult, type RunContext, type WeightOnlyOptions } from '@qforge/core';
import { GraphIndex, encodeModel, intAttr, loadModel, makeNode, makeTensor, tensorToFloat32, topologicalSort, uniqueNamer, withExtraOutputs, type ModelProto, type NodeProto } from '@qforge/onnx';
import { dropUnusedInitializers, prepareGraph } from './prepare';
import { applyEmbeddingRewrite, blockWeightType, computesWithTableTransposed, embeddingChange, gatherBlockQuantized, gatherFromMatMulNBits, refuseBlockLayout, selectEmbeddings, type MatMulNBitsStorage } from './quantize-gather';
import { createSession, runSession } from './runtime';
import { selectWeightedNodes, type Candidate } from './selection';
import { writeQuantizeResult } from './write-model';

const MS_DOMAIN = 'com.microsoft';
/** Block sizes ONNX Runtime's MatMulNBits kernels accept: powers of two from 16. */
export const WEIGHT_ONLY_BLOCK_SIZES = [16, 32, 64, 128, 256] as const;

export const DEFAULT_WEIGHT_ONLY: WeightOnlyOptions = { bits: 4, blockSize: 32, symmetric: false, algorithm: 'rtn' };
/** Embedding tables keep 8 bits unless asked for 4: see WeightOnlyOptions.embeddingBits. */
export const DEFAULT_EMBEDDING_BITS: 4 | 8 = 8;

/**
 * One weight [K, N] (y = x·W) in MatMulNBits layout: B is uint8 [N, blocks, blockSize·bits/8] with
 * the codes of column n along K, low nibble first; scales are [N·blocks]; zero points (asymmetric
 * only) are uint8 [N·ceil(blocks·bits/8)], two 4-bit values per byte, low nibble first, each column
 * padded to whole bytes. A weight is (code − zero point) · scale; absent zero points mean 2^(bits−1).
 */
export interface BlockQuantizedWeight {
  k: number;
  n: number;
  bits: 4 | 8;
  blockSize: number;
  packed: Uint8Array;
  scales: Float32Array;
  zeroPoints?: Uint8Array;
}

export function validateWeightOnly(o: WeightOnlyOptions): void {
  if (o.bits !== 4 && o.bits !== 8) throw errInvalidOption('--weight-bits', `${o.bits} is not a width MatMulNBits stores here`, 'Use --weight-bits 4 or 8.');
  if (!(WEIGHT_ONLY_BLOCK_SIZES as readonly number[]).includes(o.blockSize)) {
    throw errInvalidOption('--block-size', `${o.blockSize} is not a block size ONNX Runtime's MatMulNBits accepts`, `Use one of ${WEIGHT_ONLY_BLOCK_SIZES.join(', ')}.`);
  }
  if (o.embeddingBits !== undefined && o.embeddingBits !== 4 && o.embeddingBits !== 8) throw errInvalidOption('--embedding-bits', `${o.embeddingBits} is not a width GatherBlockQuantized stores here`, 'Use 4 or 8.');
  if (o.algorithm !== 'rtn' && o.algorithm !== 'gptq') throw errInvalidOption('--algorithm', `unknown algorithm ${o.algorithm}`, 'Use rtn or gptq.');
  const unknown = (o.keepFloat ?? []).filter((p) => p !== 'first' && p !== 'last');
  if (unknown.length) throw errInvalidOption('--keep-float', `unknown position(s) ${unknown.join(', ')}`, 'Use first, last or first,last; name other nodes with --exclude-nodes.');
}

/** Scale and zero point of one block from its values (the range always holds 0, so 0 is exact). */
function blockParams(values: ArrayLike<number>, start: number, end: number, stride: number, offset: number, bits: number, symmetric: boolean): { scale: number; zp: number } {
  const qmax = (1 << bits) - 1;
  if (symmetric) {
    // The value of largest magnitude maps to −2^(bits−1), the one code the other side lacks, as
    // ONNX Runtime's own quantizer does: a 4-bit block gets 8 levels on that side instead of 7.
    let peak = 0;
    for (let r = start; r < end; r++) {
      const v = values[r * stride + offset];
      if (Math.abs(v) > Math.abs(peak)) peak = v;
    }
    const scale = peak / -(1 << (bits - 1));
    return { scale: scale === 0 ? 1 : scale, zp: 1 << (bits - 1) };
  }
  let lo = 0;
  let hi = 0;
  for (let r = start; r < end; r++) {
    const v = values[r * stride + offset];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const scale = (hi - lo) / qmax;
  if (scale === 0) return { scale: 1, zp: 0 };
  return { scale, zp: Math.min(qmax, Math.max(0, Math.round(-lo / scale))) };
}

const code = (v: number, scale: number, zp: number, qmax: number) => Math.min(qmax, Math.max(0, Math.round(v / scale) + zp));

/** Packs codes [N][paddedK] (column-major along K) and block parameters into MatMulNBits tensors. */
function pack(k: number, n: number, o: { bits: 4 | 8; blockSize: number; symmetric: boolean }, codes: Uint8Array, scales: Float32Array, zps: Uint8Array): BlockQuantizedWeight {
  const blocks = Math.ceil(k / o.blockSize);
  const padded = blocks * o.blockSize;
  const blob = (o.blockSize * o.bits) / 8;
  const packed = new Uint8Array(n * blocks * blob);
  if (o.bits === 8) packed.set(codes);
  else for (let i = 0; i < n * padded; i += 2) packed[i >> 1] = codes[i] | (codes[i + 1] << 4);
  let zeroPoints: Uint8Array | undefined;
  if (!o.symmetric) {
    if (o.bits === 8) zeroPoints = zps;
    else {
      const perCol = Math.ceil(blocks / 2);
      zeroPoints = new Uint8Array(n * perCol);
      for (let c = 0; c < n; c++) for (let b = 0; b < blocks; b++) zeroPoints[c * perCol + (b >> 1)] |= zps[c * blocks + b] << ((b & 1) * 4);
    }
  }
  return { k, n, bits: o.bits, blockSize: o.blockSize, packed, scales, zeroPoints };
}

/**
 * Round-to-nearest block quantization of W [K, N] (row-major, y = x·W). `layout: 'nk'` reads the
 * same weight stored as [N, K] instead (an embedding table [V, D] is W = tableᵀ with K = D, N = V),
 * so a table is quantized along its rows without a transposed copy.
 */
export function quantizeBlockwiseRtn(w: Float32Array, k: number, n: number, o: { bits: 4 | 8; blockSize: number; symmetric: boolean }, layout: 'kn' | 'nk' = 'kn'): BlockQuantizedWeight {
  const blocks = Math.ceil(k / o.blockSize);
  const padded = blocks * o.blockSize;
  const qmax = (1 << o.bits) - 1;
  const codes = new Uint8Array(n * padded);
  const scales = new Float32Array(n * blocks);
  const zps = new Uint8Array(n * blocks);
  // Element (r, c) sits at r·stride + offset(c).
  const stride = layout === 'kn' ? n : 1;
  for (let c = 0; c < n; c++) {
    const offset = layout === 'kn' ? c : c * k;
    for (let b = 0; b < blocks; b++) {
      const start = b * o.blockSize;
      const end = Math.min(k, start + o.blockSize);
      const { scale, zp } = blockParams(w, start, end, stride, offset, o.bits, o.symmetric);
      scales[c * blocks + b] = scale;
      zps[c * blocks + b] = zp;
      // Padding rows beyond K hold the code of 0, so they add nothing.
      for (let r = start; r < start + o.blockSize; r++) codes[c * padded + r] = r < end ? code(w[r * stride + offset], scale, zp, qmax) : zp;
    }
  }
  return pack(k, n, o, codes, scales, zps);
}

/** Cholesky factor L (lower, row-major) of a symmetric positive definite matrix; undefined if it is not. */
function cholesky(a: Float64Array, size: number): Float64Array | undefined {
  const l = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * size + j];
      for (let p = 0; p < j; p++) s -= l[i * size + p] * l[j * size + p];
      if (i === j) {
        if (!(s > 0)) return undefined;
        l[i * size + i] = Math.sqrt(s);
      } else l[i * size + j] = s / l[j * size + j];
    }
  }
  return l;
}

/** H⁻¹ from its Cholesky factor: inverts L (triangular), then L⁻ᵀ·L⁻¹. */
function inverseFromCholesky(l: Float64Array, size: number): Float64Array {
  const li = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    li[i * size + i] = 1 / l[i * size + i];
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let p = j; p < i; p++) s += l[i * size + p] * li[p * size + j];
      li[i * size + j] = -s / l[i * size + i];
    }
  }
  const inv = new Float64Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = i; p < size; p++) s += li[p * size + i] * li[p * size + j];
      inv[i * size + j] = s;
      inv[j * size + i] = s;
    }
  }
  return inv;
}

/**
 * GPTQ (Frantar et al., 2022) with block-wise parameters: weights are rounded one input row k at a
 * time, and each row's rounding error, weighted by the inverse Hessian H = 2·XᵀX of the layer's
 * inputs, is pushed onto the rows not yet rounded. A block's scale and zero point are chosen when
 * its first row is reached, from the already-corrected values. `hessian` is XᵀX [K, K] summed over
 * the calibration rows. Falls back to round-to-nearest (and says so) when H cannot be factored.
 */
export function quantizeBlockwiseGptq(w: Float32Array, k: number, n: number, o: { bits: 4 | 8; blockSize: number; symmetric: boolean }, hessian: Float64Array, dampRatio = 0.01): BlockQuantizedWeight | undefined {
  const h = Float64Array.from(hessian);
  const work = Float64Array.from(w);
  let meanDiag = 0;
  for (let i = 0; i < k; i++) meanDiag += h[i * k + i] / k;
  for (let i = 0; i < k; i++) {
    // An input that never fired carries no information: its weights cannot matter, so they are zeroed.
    if (h[i * k + i] === 0) {
      h[i * k + i] = 1;
      for (let c = 0; c < n; c++) work[i * n + c] = 0;
    }
    h[i * k + i] += dampRatio * (meanDiag || 1);
  }
  const l = cholesky(h, k);
  if (!l) return undefined;
  const hinv = inverseFromCholesky(l, k);
  // GPTQ needs the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU): U = Lᵀ of chol(H⁻¹).
  const lInv = cholesky(hinv, k);
  if (!lInv) return undefined;
  const blocks = Math.ceil(k / o.blockSize);
  const padded = blocks * o.blockSize;
  const qmax = (1 << o.bits) - 1;
  const codes = new Uint8Array(n * padded);
  const scales = new Float32Array(n * blocks);
  const zps = new Uint8Array(n * blocks);
  const err = new Float64Array(n);
  for (let r = 0; r < k; r++) {
    const b = Math.floor(r / o.blockSize);
    if (r % o.blockSize === 0) {
      const end = Math.min(k, r + o.blockSize);
      for (let c = 0; c < n; c++) {
        const { scale, zp } = blockParams(work, r, end, n, c, o.bits, o.symmetric);
        scales[c * blocks + b] = scale;
        zps[c * blocks + b] = zp;
      }
    }
    const d = lInv[r * k + r];
    for (let c = 0; c < n; c++) {
      const scale = scales[c * blocks + b];
      const zp = zps[c * blocks + b];
      const q = code(work[r * n + c], scale, zp, qmax);
      codes[c * padded + r] = q;
      err[c] = (work[r * n + c] - (q - zp) * scale) / d;
    }
    // U[r][j] = L[j][r] of chol(H⁻¹).
    for (let j = r + 1; j < k; j++) {
      const u = lInv[j * k + r];
      if (u === 0) continue;
      const row = j * n;
      for (let c = 0; c < n; c++) work[row + c] -= err[c] * u;
    }
  }
  // Padding rows beyond K hold the code of 0, so they add nothing.
  for (let c = 0; c < n; c++) for (let r = k; r < padded; r++) codes[c * padded + r] = zps[c * blocks + blocks - 1];
  return pack(k, n, o, codes, scales, zps);
}

/** Dequantizes back to W [K, N]: the weights MatMulNBits computes with (for tests and error reports). */
export function dequantizeBlockwise(q: BlockQuantizedWeight): Float32Array {
  const blocks = Math.ceil(q.k / q.blockSize);
  const blob = (q.blockSize * q.bits) / 8;
  const out = new Float32Array(q.k * q.n);
  const perCol = Math.ceil((blocks * q.bits) / 8);
  for (let c = 0; c < q.n; c++) {
    for (let r = 0; r < q.k; r++) {
      const b = Math.floor(r / q.blockSize);
      const i = r % q.blockSize;
      const byte = q.packed[(c * blocks + b) * blob + (q.bits === 8 ? i : i >> 1)];
      const v = q.bits === 8 ? byte : (byte >> ((i & 1) * 4)) & 15;
      const zp = q.zeroPoints ? (q.bits === 8 ? q.zeroPoints[c * blocks + b] : (q.zeroPoints[c * perCol + (b >> 1)] >> ((b & 1) * 4)) & 15) : 1 << (q.bits - 1);
      out[r * q.n + c] = (v - zp) * q.scales[c * blocks + b];
    }
  }
  return out;
}

/** The MatMuls weight-only quantization may rewrite: constant float [K, N] weights. */
function candidates(proto: ModelProto, excluded: Set<string>, decisions: NodeDecision[]): Candidate[] {
  const idx = new GraphIndex(proto.graph);
  return selectWeightedNodes(proto.graph.node, idx, { opTypes: new Set(['MatMul']), excluded, weightRank: 2 }, decisions);
}

/**
 * XᵀX of the input of every chosen MatMul, accumulated over the calibration samples (one pass of
 * the float model; inputs shared by several MatMuls, like Q/K/V projections, are summed once).
 * Memory is K² doubles per distinct input, whatever the number of samples.
 */
export async function collectInputGram(proto: ModelProto, inputs: { tensor: string; k: number }[], dataset: Dataset, samples: number, ctx: RunContext): Promise<{ gram: Map<string, Float64Array>; rows: number; samples: number }> {
  const distinct = new Map(inputs.map((i) => [i.tensor, i.k]));
  const gram = new Map([...distinct].map(([t, k]) => [t, new Float64Array(k * k)]));
  const session = await createSession(encodeModel(withExtraOutputs(proto, [...distinct.keys()])), { optimization: 'basic' });
  let rows = 0;
  let count = 0;
  try {
    for await (const sample of dataset.samples({ limit: samples })) {
      throwIfAborted(ctx, 'weight-only calibration');
      const out = await runSession(session, sample.inputs, [...distinct.keys()]);
      for (const [t, k] of distinct) {
        const x = out[t].data as Float32Array;
        const g = gram.get(t)!;
        const m = x.length / k;
        for (let row = 0; row < m; row++) {
          const base = row * k;
          for (let i = 0; i < k; i++) {
            const xi = x[base + i];
            if (xi === 0) continue;
            const gi = i * k;
            for (let j = i; j < k; j++) g[gi + j] += xi * x[base + j];
          }
        }
        if (t === inputs[0].tensor) rows += m;
      }
      count++;
      ctx.progress({ phase: 'calibrate', current: count, total: samples, message: 'collecting MatMul input statistics (GPTQ)' });
    }
  } finally {
    await session.release();
  }
  // Only the upper triangle was summed; mirror it.
  for (const [t, g] of gram) {
    const k = distinct.get(t)!;
    for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) g[j * k + i] = g[i * k + j];
  }
  return { gram, rows, samples: count };
}

export interface WeightOnlyResult {
  decisions: NodeDecision[];
  changes: GraphChange[];
}

/**
 * Rewrites MatMuls with constant float weights to `MatMulNBits` (com.microsoft), one weight at a
 * time (each float weight is read as a view of its loaded bytes, never copied whole). Nodes kept in
 * float are reported with the reason.
 */
export async function quantizeWeightOnly(proto: ModelProto, options: { excludeNodes: string[]; weightOnly?: WeightOnlyOptions; correctionData?: Dataset; correctionSamples?: number }, ctx: RunContext): Promise<WeightOnlyResult> {
  const o: WeightOnlyOptions = { ...DEFAULT_WEIGHT_ONLY, ...options.weightOnly };
  validateWeightOnly(o);
  const g = proto.graph;
  const decisions: NodeDecision[] = [];
  const changes: GraphChange[] = [];
  let chosen = candidates(proto, new Set(options.excludeNodes), decisions);
  // Position-based keeps: the first MatMul reads the embeddings, the last is usually the LM head.
  const keep = new Map<NodeProto, string>();
  if (o.keepFloat?.includes('first') && chosen.length) keep.set(chosen[0].node, 'kept in float: the first MatMul (--keep-float first)');
  if (o.keepFloat?.includes('last') && chosen.length) keep.set(chosen[chosen.length - 1].node, 'kept in float: the last MatMul, usually the LM head (--keep-float last)');
  for (const [node, reason] of keep) decisions.push({ node: node.name || node.output[0], opType: node.opType, quantized: false, reason });
  chosen = chosen.filter((c) => !keep.has(c.node));
  // MatMulNBits needs K ≥ the block size's smallest sensible multiple; tiny reductions stay float.
  chosen = chosen.filter((c) => {
    const k = Number(c.weight.dims[0]);
    if (k >= 16) return true;
    decisions.push({ node: c.name, opType: c.node.opType, quantized: false, reason: `K = ${k} is below 16: too small for block-wise quantization` });
    return false;
  });

  let gram: Map<string, Float64Array> | undefined;
  if (o.algorithm === 'gptq' && chosen.length) {
    if (!options.correctionData) throw errInvalidOption('--algorithm gptq', 'GPTQ needs calibration data (the inputs of each MatMul)', 'Pass --data <dataset>, or use --algorithm rtn.');
    const collected = await collectInputGram(proto, chosen.map((c) => ({ tensor: c.node.input[0], k: Number(c.weight.dims[0]) })), options.correctionData, options.correctionSamples ?? DEFAULT_CALIBRATION_SAMPLES, ctx);
    if (!collected.samples) throw errInvalidOption('--data', 'the calibration dataset yielded no samples for GPTQ');
    gram = collected.gram;
    changes.push({ kind: 'weight-only-statistics', detail: `GPTQ: XᵀX of ${collected.gram.size} distinct MatMul input(s) from ${collected.samples} sample(s), ${collected.rows} row(s)` });
  }

  // Tables tied to a chosen MatMul's weight are found now, while both are still float.
  const idx = new GraphIndex(g);
  const excluded = new Set(options.excludeNodes);
  const looksLikeEmbedding = selectEmbeddings(g, idx, { excluded, replacedReaders: new Set(chosen.map((c) => c.node)) }, []);
  const tiedTo = new Map<NodeProto, string>();
  for (const e of looksLikeEmbedding) {
    const head = chosen.find((c) => !tiedTo.has(c.node) && computesWithTableTransposed(c.weight, false, e.table));
    if (head) tiedTo.set(head.node, e.table.name);
  }

  const name = uniqueNamer(g);
  const replaced = new Map<NodeProto, NodeProto[]>();
  const weightType = blockWeightType(o.bits, o.symmetric);
  const storage = new Map<string, MatMulNBitsStorage & { gptq: boolean }>();
  const tiedStorage = new Map<string, { storage: MatMulNBitsStorage; head: string }>();
  // A float weight goes as soon as every node reading it is rewritten: a large model is never held
  // in both precisions (the float bytes of an inline model stay in its loaded file buffer anyway).
  const readersLeft = new Map(chosen.map((c) => [c.weight.name, idx.consumersOf(c.weight.name).length]));
  let released = 0;
  let fellBack = 0;
  let reused = 0;
  for (const [i, c] of chosen.entries()) {
    throwIfAborted(ctx, 'quantization');
    const [k, n] = c.weight.dims.map(Number);
    // Two MatMuls reading one weight (shared projections) share one packed copy; GPTQ also depends on the input.
    const key = gram ? `${c.weight.name}\u0000${c.node.input[0]}` : c.weight.name;
    let s = storage.get(key);
    if (s) reused++;
    else {
      const w = tensorToFloat32(c.weight);
      const viaGptq = gram ? quantizeBlockwiseGptq(w, k, n, o, gram.get(c.node.input[0])!) : undefined;
      if (gram && !viaGptq) fellBack++;
      const q = viaGptq ?? quantizeBlockwiseRtn(w, k, n, o);
      const base = c.node.input[1];
      const blocks = Math.ceil(k / o.blockSize);
      const b = makeTensor(name(`${base}_Q${o.bits}`), [n, blocks, (o.blockSize * o.bits) / 8], q.packed);
      const sc = makeTensor(name(`${base}_scales`), [n * blocks], q.scales);
      g.initializer.push(b, sc);
      s = { b: b.name, scales: sc.name, q, gptq: Boolean(viaGptq) };
      if (q.zeroPoints) {
        const z = makeTensor(name(`${base}_zero_points`), [q.zeroPoints.length], q.zeroPoints);
        g.initializer.push(z);
        s.zeroPoints = z.name;
      }
      storage.set(key, s);
    }
    const inputs = [c.node.input[0], s.b, s.scales, ...(s.zeroPoints ? [s.zeroPoints] : [])];
    replaced.set(c.node, [makeNode('MatMulNBits', inputs, [c.node.output[0]], name(`${c.name}_Q${o.bits}`), [intAttr('K', k), intAttr('N', n), intAttr('bits', o.bits), intAttr('block_size', o.blockSize)], MS_DOMAIN)]);
    const tied = tiedTo.get(c.node);
    if (tied) tiedStorage.set(tied, { storage: s, head: c.name });
    decisions.push({ node: c.name, opType: c.node.opType, quantized: true, weightType, granularity: 'per-block', reason: `MatMulNBits ${o.bits}-bit, block ${o.blockSize}, ${o.symmetric ? 'symmetric' : 'asymmetric'}, ${s.gptq ? 'GPTQ' : 'round-to-nearest'}${tied ? `; its weight is the transpose of the embedding table ${tied}, which reads this storage too` : ''}` });
    const left = readersLeft.get(c.weight.name)! - 1;
    readersLeft.set(c.weight.name, left);
    if (left === 0 && !idx.graphOutputNames.has(c.weight.name)) {
      const at = g.initializer.indexOf(c.weight);
      if (at >= 0) g.initializer.splice(at, 1);
      c.weight.rawData = new Uint8Array(0);
      c.weight.floatData = [];
      released++;
    }
    ctx.progress({ phase: 'quantize', current: i + 1, total: chosen.length });
  }

  // Embedding tables: GatherBlockQuantized, from the tied head's storage when there is one.
  const embeddings = selectEmbeddings(g, idx, { excluded, replacedReaders: new Set(replaced.keys()) }, decisions);
  // 4-bit tables cost the byte GPT of docs/benchmarks.md +0.7% perplexity on top of its 4-bit MatMuls; 8-bit ones nothing measurable.
  const eo = { ...o, bits: o.embeddingBits ?? DEFAULT_EMBEDDING_BITS };
  const lines: string[] = [];
  for (const e of embeddings) {
    const tie = tiedStorage.get(e.table.name);
    const shareable = tie && eo.bits === o.bits && e.cols % o.blockSize === 0;
    const refused = shareable ? undefined : refuseBlockLayout(e, eo.bits);
    if (refused) {
      decisions.push({ node: e.name, opType: e.node.opType, quantized: false, reason: refused });
      continue;
    }
    const rewrite = shareable ? gatherFromMatMulNBits(e, tie.storage, name) : gatherBlockQuantized(e, quantizeBlockwiseRtn(tensorToFloat32(e.table), e.cols, e.rows, eo, 'nk'), name);
    const how = `GatherBlockQuantized ${eo.bits}-bit, block ${o.blockSize} along each row, ${o.symmetric ? 'symmetric' : 'asymmetric'}`;
    const apart = !tie ? '' : eo.bits !== o.bits ? ` (tied to ${tie.head}, stored apart: ${eo.bits}-bit table, ${o.bits}-bit head)` : ` (tied to ${tie.head}, stored apart: ${e.cols} values per row is not a whole number of blocks)`;
    const reason = shareable ? `${how}; tied to ${tie.head}: reads its MatMulNBits weight, no table of its own` : `${how}, round-to-nearest${apart}`;
    applyEmbeddingRewrite(g, e, rewrite, replaced, { weightType: blockWeightType(eo.bits, o.symmetric), granularity: 'per-block', reason, sharedWith: shareable ? tie.head : undefined }, { decisions, lines });
  }

  g.node = g.node.flatMap((node) => replaced.get(node) ?? [node]);
  if (replaced.size && !proto.opsetImport.some((op) => op.domain === MS_DOMAIN)) proto.opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  const matmuls = chosen.length;
  changes.push({ kind: 'weight-only', detail: `${matmuls} MatMul node(s) → MatMulNBits (${o.bits}-bit, block ${o.blockSize}, ${o.symmetric ? 'symmetric' : 'asymmetric'}, ${o.algorithm})${reused ? `; ${reused} of them share another's packed weight (same float weight)` : ''}; ${released} float weight(s) released as they were replaced` });
  if (lines.length) changes.push(embeddingChange('weight-only-gather', lines, `GatherBlockQuantized (${eo.bits}-bit)`));
  if (fellBack) changes.push({ kind: 'weight-only', detail: `GPTQ: ${fellBack} weight(s) rounded to nearest instead (their input statistics could not be factored)` });
  return { decisions, changes };
}

/** The weight-only run of the backend: load, prepare (Constant weights → initializers), rewrite, check, write. */
export async function quantizeWeightOnlyModel(model: ModelRef, options: QuantizeOptions, ctx: RunContext): Promise<QuantizeResult> {
  validateWeightOnly({ ...DEFAULT_WEIGHT_ONLY, ...options.weightOnly });
  const loaded = loadModel(model.path);
  ctx.progress({ phase: 'prepare', current: 0, message: 'preparing the model' });
  const preparation = prepareGraph(loaded.proto);
  const { decisions, changes } = await quantizeWeightOnly(loaded.proto, options, ctx);
  if (!decisions.some((d) => d.quantized)) {
    throw errUnsupported('onnxruntime', 'this model', `no MatMul could be quantized weight-only (${decisions.map((d) => `${d.node}: ${d.reason}`).slice(0, 3).join('; ') || 'no MatMul with a constant weight'})`);
  }
  throwIfAborted(ctx, 'quantization');
  ctx.progress({ phase: 'write', current: 0, message: options.output });
  return writeQuantizeResult(loaded.proto, options.output, { preparation: [...preparation, ...changes], decisions }, options.externalData);
}
