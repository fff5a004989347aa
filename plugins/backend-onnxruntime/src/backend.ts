// The ONNX Runtime backend: calibrate, quantize, benchmark and verify ONNX models (no side effects on import).
import {
  AccuracyAccumulator,
  judgeVerification,
  FidelityAccumulator,
  OutputAccumulator,
  buildCalibrationTable,
  TensorStatistics,
  assertFiniteSample,
  assertTableMatches,
  errCalibTableMismatch,
  errDatasetEmpty,
  errInvalidOption,
  errUnsupported,
  elementCount,
  errModelCorrupt,
  firstSample,
  mulberry32,
  openDataset,
  methodNeedsHistogram,
  sha256Async,
  summarizeLatencies,
  throughputPerSec,
  throwIfAborted,
  estimateSpeedup,
  measureAlternately,
  measurementPlan,
  type Backend,
  type BackendCapabilities,
  type BenchmarkOptions,
  type BenchmarkResult,
  type CalibrateOptions,
  type CalibrationTable,
  type Dataset,
  type Detection,
  type LayerError,
  type ModelBenchmark,
  type ModelInfo,
  type ModelRef,
  type NodeDecision,
  type GraphChange,
  type QuantizeOptions,
  type QuantizeResult,
  type RunContext,
  type Sample,
  type Tensor,
  type TensorInfo,
  type VerifyOptions,
  type VerifyResult,
} from '@qforge/core';
import { GraphIndex, describeModel, encodeModel, graphInputs, intAttr, tensorToFloat32, loadModel, makeNode, withExtraOutputs, type ModelProto } from '@qforge/onnx';
import { correctBiases } from './bias-correction';
import { prepareForCalibration, prepareModel, readEqualizedActivations, shapeQuestions, type ObservedShapes, type PreparationResult } from './prepare';
import { quantizeDynamic } from './quantize-dynamic';
import { quantizeWeightOnlyModel } from './quantize-weight-only';
import { convertModelToFloat16 } from './convert-fp16';
import { STATIC_OP_TYPES, calibrationTensors, quantizeStaticQdq } from './quantize-qdq';
import { qdqToQOperator } from './quantize-qoperator';
import { storeWeightsInt8 } from './quantize-int8-storage';
import { OP_QUANTIZERS } from './ops';
import { quantizeRecurrent, splitRecurrent } from './ops/lstm';
import { createSession, loadOrt, runSession } from './runtime';
import { writeQuantizeResult } from './write-model';
import { branchCalibrationTensors, liftBranchTensors, quantizeBodies, scopedNames, uniquifyBodyNames } from './subgraphs';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE = require('../package.json') as { name: string; version: string };

export const ONNXRUNTIME_CAPABILITIES: BackendCapabilities = {
  inputFormats: ['onnx'],
  outputFormats: ['onnx'],
  verbs: ['inspect', 'calibrate', 'quantize', 'benchmark', 'verify'],
  modes: ['static', 'dynamic', 'weight-only', 'fp16'],
  quantFormats: ['qdq', 'qoperator'],
  calibrationMethods: ['minmax', 'percentile', 'entropy', 'mse'],
  weightTypes: ['int8', 'uint8', 'int4', 'uint4'],
  activationTypes: ['uint8', 'int8'],
  granularity: ['per-tensor', 'per-channel', 'per-block'],
  targets: ['x86-avx2', 'x86-vnni', 'x86-generic', 'arm64'],
  notes: [
    `static QDQ quantization of ${STATIC_OP_TYPES.join(', ')}; pass-through ops share parameters; Relu/Clip fused into output ranges`,
    'dynamic quantization of MatMul/Gemm to DynamicQuantizeMatMul',
    'weight-only: MatMul → MatMulNBits (4- or 8-bit blocks, round-to-nearest or GPTQ), float activations',
    'fp16: float16 weights and compute, float32 inputs/outputs, Resize/TopK/Range/CumSum/… kept in float32',
    'LSTM → DynamicQuantizeLSTM (int8 weights, activations quantized at run time) in static and dynamic mode; ONNX Runtime has no static int8 LSTM',
    'preparation: Constant→initializer, Conv+BatchNormalization folding, opset upgrade to 13 for per-channel weights',
    'QOperator format: Conv → QLinearConv and MatMul → QLinearMatMul; Gemm stays QDQ',
    'latency search: opt-in op families timed on this machine and kept where faster and accurate; storage-only int8 (weights dequantized at load, fp32 speed) when int8 kernels are slower',
  ],
  opFamilies: familiesOf(OP_QUANTIZERS),
  storageOnly: true,
};

/** The registry's switchable families for `capabilities.opFamilies` (pass-through ops follow their inputs). */
function familiesOf(quantizers: typeof OP_QUANTIZERS): BackendCapabilities['opFamilies'] {
  const out = new Map<string, { family: string; opTypes: string[]; byDefault: boolean }>();
  for (const q of quantizers) {
    if (q.role === 'pass-through') continue;
    const f = out.get(q.family) ?? { family: q.family, opTypes: [], byDefault: q.byDefault };
    f.opTypes.push(...q.opTypes);
    // A family is on by default only when all of its op types are.
    f.byDefault &&= q.byDefault;
    out.set(q.family, f);
  }
  return [...out.values()];
}

function allTensorNames(proto: ModelProto): string[] {
  const names = new Set<string>(graphInputs(proto.graph).map((i) => i.name));
  for (const n of proto.graph.node) for (const o of n.output) if (o) names.add(o);
  return [...names];
}

/** Calibration candidates of the top graph and of every If branch. */
function calibrationTensorsWithBranches(proto: ModelProto): string[] {
  return [...new Set([...calibrationTensors(proto), ...branchCalibrationTensors(proto, calibrationTensors)])];
}

function withOutputs(proto: ModelProto, tensors: string[]): Uint8Array {
  return encodeModel(withExtraOutputs(proto, tensors));
}

/** Fixed random inputs for a benchmark without data: symbolic dims other than the batch are an error. */
function randomInputs(inputs: TensorInfo[], seed: number): Promise<Sample> {
  return firstSample(openDataset(`random:${seed}`, { inputs }));
}

/**
 * Inputs for a structural probe of the graph (which ranks and static dims its tensors have), never
 * for measurements: the shapes calibration saw when the table records them, else symbolic dims as
 * 1; float inputs random, integer and bool inputs zero.
 */
function probeInputs(path: string, inputs: TensorInfo[], dims?: Record<string, number[]>): Record<string, Tensor> {
  const rnd = mulberry32(0);
  const out: Record<string, Tensor> = {};
  for (const i of inputs) {
    const shape = dims?.[i.name] ?? i.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
    const n = elementCount(shape);
    // A declared size no real input has (corrupt or absurd dims) is refused before allocating it.
    if (!Number.isSafeInteger(n) || n > 1 << 28) throw errModelCorrupt(path, `input "${i.name}" declares [${shape.join(',')}], ${n} elements`);
    if (i.dtype === 'int64') out[i.name] = { dtype: 'int64', dims: shape, data: new BigInt64Array(n) };
    else if (i.dtype === 'int32') out[i.name] = { dtype: 'int32', dims: shape, data: new Int32Array(n) };
    else if (i.dtype === 'bool') out[i.name] = { dtype: 'bool', dims: shape, data: new Uint8Array(n) };
    else out[i.name] = { dtype: 'float32', dims: shape, data: Float32Array.from({ length: n }, () => rnd() * 2 - 1) };
  }
  return out;
}

/**
 * Shapes of the given tensors from one real run of the float model (static inference cannot tell
 * for exported graphs with symbolic dims). Only the tensors preparation asks about are fetched.
 */
async function observeShapes(proto: ModelProto, inputs: Record<string, Tensor>, names: string[]): Promise<ObservedShapes> {
  const shapes: ObservedShapes = new Map(Object.entries(inputs).map(([k, t]) => [k, t.dims]));
  const wanted = names.filter((n) => !shapes.has(n));
  if (!wanted.length) return shapes;
  const session = await createSession(withOutputs(proto, wanted), { optimization: 'all' });
  try {
    const out = await runSession(session, inputs, wanted);
    for (const [k, v] of Object.entries(out)) shapes.set(k, [...v.dims].map(Number));
    return shapes;
  } finally {
    await session.release();
  }
}

/**
 * Calibrated tensors whose producer never outputs negatives (Relu, Sigmoid, Softmax, HardSigmoid,
 * Clip with a non-negative floor). Quantization ranges always include 0, so their minimum is 0
 * and only the maximum needs a pass over the values.
 */
function nonNegativeTensors(proto: ModelProto, tensors: string[]): Set<string> {
  const idx = new GraphIndex(proto.graph);
  const out = new Set<string>();
  for (const t of tensors) {
    const p = idx.producer.get(t);
    if (!p || (p.domain && p.domain !== 'ai.onnx')) continue;
    if (['Relu', 'Sigmoid', 'Softmax', 'HardSigmoid'].includes(p.opType)) out.add(t);
    else if (p.opType === 'Clip') {
      const lo = p.input[1] ? idx.initializers.get(p.input[1]) : undefined;
      if (lo && tensorToFloat32(lo)[0] >= 0) out.add(t);
    }
  }
  return out;
}

async function* limited(dataset: Dataset, limit: number): AsyncGenerator<Sample> {
  for await (const s of dataset.samples({ limit })) {
    assertFiniteSample(s);
    yield s;
  }
}

export class OnnxRuntimeBackend implements Backend {
  readonly id = 'onnxruntime';
  readonly displayName = 'ONNX Runtime';
  readonly packageName = PACKAGE.name;
  readonly version = PACKAGE.version;
  readonly capabilities = ONNXRUNTIME_CAPABILITIES;
  private detection?: Promise<Detection>;

  detect(): Promise<Detection> {
    this.detection ??= (async (): Promise<Detection> => {
      try {
        const ort = loadOrt();
        const version = ort.env.versions?.node ?? ort.env.versions?.common;
        const backends = typeof ort.listSupportedBackends === 'function' ? ort.listSupportedBackends().map((b) => b.name) : ['cpu'];
        return { available: true, version, runtime: `onnxruntime-node ${version}`, details: { executionProviders: backends } };
      } catch (e) {
        return {
          available: false,
          reason: `onnxruntime-node does not load: ${(e as Error).message.split('\n')[0]}`,
          hint: 'Install it with `npm i onnxruntime-node` (set onnxruntime-node-install=skip in .npmrc where its download is blocked).',
        };
      }
    })();
    return this.detection;
  }

  async inspect(model: ModelRef): Promise<ModelInfo> {
    return describeModel(loadModel(model.path));
  }

  async modelInputs(model: ModelRef): Promise<TensorInfo[]> {
    return graphInputs(loadModel(model.path).proto.graph);
  }

  async calibrate(model: ModelRef, dataset: Dataset, options: CalibrateOptions, ctx: RunContext): Promise<CalibrationTable> {
    if (!this.capabilities.calibrationMethods.includes(options.method)) throw errInvalidOption('--method', `unknown method ${options.method}`);
    const iterator = limited(dataset, options.samples)[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done) throw errDatasetEmpty(dataset.description.source);
    ctx.progress({ phase: 'prepare', current: 0, message: 'preparing the model' });
    const loaded = loadModel(model.path);
    // Hashed off the main thread while the model is prepared and calibrated; awaited at the end.
    const inputSha = sha256Async(loaded.bytes!);
    inputSha.catch(() => undefined);
    // No separate shape-probing session: the first calibration run answers the upgrade's questions.
    const prep = prepareForCalibration(loaded.proto, { equalize: options.equalize });
    const candidates = prep.candidates(calibrationTensorsWithBranches);
    const graphInputNames = new Set(graphInputs(prep.proto.graph).map((i) => i.name));
    // Tensors inside If branches are fetched through extra outputs of the If nodes, as raw values.
    const inBodies = scopedNames(prep.proto.graph);
    const scoped = candidates.filter((t) => inBodies.has(t));
    const lifted = scoped.length ? liftBranchTensors(prep.proto, scoped) : undefined;
    const sessionProto = lifted?.proto ?? prep.proto;
    const fetchName = (t: string) => lifted?.fetch.get(t) ?? t;
    const topLevel = candidates.filter((t) => !inBodies.has(t));
    const questions = prep.questions.filter((t) => !graphInputNames.has(t));
    let firstFetch: string[];
    // minmax needs only each tensor's extremes: ReduceMin/ReduceMax nodes compute them inside the
    // runtime, so no activation is copied into JavaScript. Histogram methods need the values.
    const native = options.method === 'minmax' && !options.keepHistograms;
    const reduceNames = new Map(topLevel.map((t) => [t, { min: `${t}__qforge_min`, max: `${t}__qforge_max` }]));
    const floorZero = native ? nonNegativeTensors(prep.proto, topLevel) : new Set<string>();
    const raw = (ts: string[]) => ts.filter((t) => !graphInputNames.has(t)).map(fetchName);
    let session;
    let fetch: string[];
    if (native) {
      const reduced: ModelProto = { ...sessionProto, graph: { ...sessionProto.graph, node: [...sessionProto.graph.node] } };
      for (const t of topLevel) {
        const r = reduceNames.get(t)!;
        if (!floorZero.has(t)) reduced.graph.node.push(makeNode('ReduceMin', [t], [r.min], r.min, [intAttr('keepdims', 0)]));
        reduced.graph.node.push(makeNode('ReduceMax', [t], [r.max], r.max, [intAttr('keepdims', 0)]));
      }
      fetch = [...topLevel.flatMap((t) => (floorZero.has(t) ? [reduceNames.get(t)!.max] : [reduceNames.get(t)!.min, reduceNames.get(t)!.max])), ...raw(scoped)];
      firstFetch = [...fetch, ...questions];
      session = await createSession(withOutputs(reduced, firstFetch), { optimization: 'all' });
    } else {
      fetch = raw(candidates);
      firstFetch = [...new Set([...fetch, ...questions])];
      session = await createSession(withOutputs(sessionProto, firstFetch), { optimization: 'basic' });
    }
    let prepared: PreparationResult | undefined;
    let tensors = candidates;
    const bins = methodNeedsHistogram(options.method) || options.keepHistograms ? 2 * (options.bins ?? 2048) : undefined;
    const stats = new Map<string, TensorStatistics>(candidates.map((t) => [t, new TensorStatistics({ movingAverage: options.movingAverage, histogramBins: bins })]));
    let count = 0;
    const total = Math.min(options.samples, dataset.description.count ?? options.samples);
    try {
      let step: IteratorResult<Sample> = first;
      while (!step.done) {
        throwIfAborted(ctx, 'calibration');
        const sample = step.value;
        // Decode the next sample while the runtime runs this one.
        const next = iterator.next();
        next.catch(() => undefined);
        const wanted = count === 0 ? firstFetch : fetch;
        // A model with nothing to calibrate (weight-only ops) still runs once to answer the shape questions.
        const out = await runSession(session, sample.inputs, wanted.length ? wanted : undefined);
        if (count === 0) {
          const shapes: ObservedShapes = new Map(Object.entries(sample.inputs).map(([k, t]) => [k, t.dims]));
          for (const q of questions) shapes.set(q, [...out[q].dims].map(Number));
          prepared = prep.finish(shapes);
          // Only float tensors are quantized; the first run tells which ones are.
          const isFloat = (t: string) => {
            const o = native && reduceNames.has(t) ? out[reduceNames.get(t)!.max] : out[fetchName(t)];
            return o ? o.type === 'float32' : sample.inputs[t]?.dtype === 'float32';
          };
          tensors = tensors.filter(isFloat);
          for (const t of [...stats.keys()]) if (!tensors.includes(t)) stats.delete(t);
        }
        for (const t of tensors) {
          if (native && reduceNames.has(t)) {
            const r = reduceNames.get(t)!;
            stats.get(t)!.minMax.updateRange(floorZero.has(t) ? 0 : (out[r.min].data as Float32Array)[0], (out[r.max].data as Float32Array)[0]);
            continue;
          }
          const data = (out[fetchName(t)]?.data ?? sample.inputs[t]?.data) as Float32Array | undefined;
          // An empty value: the branch holding this tensor did not run for this sample.
          if (data?.length) stats.get(t)!.update(data);
        }
        count++;
        ctx.progress({ phase: 'calibrate', current: count, total });
        step = await next;
      }
    } finally {
      await session.release();
    }
    // Keep only what the prepared graph quantizes (the other outcome of the upgrade is dropped).
    const kept = new Set(calibrationTensorsWithBranches(prepared!.proto));
    for (const t of [...stats.keys()]) if (!kept.has(t)) stats.delete(t);
    // A branch that never ran left its tensors without values: no range can be claimed for them.
    for (const [t, st] of [...stats]) if (inBodies.has(t) && !st.minMax.count) stats.delete(t);
    return buildCalibrationTable({
      backend: this.id,
      model: { sha256: await inputSha, format: 'onnx', preparedSha256: await sha256Async(encodeModel(prepared!.proto)) },
      options,
      sampleCount: count,
      dataset: dataset.description,
      stats,
      methodOptions: { inputDims: Object.fromEntries(Object.entries(first.value.inputs).map(([k, t]) => [k, t.dims])) },
    });
  }

  async quantize(model: ModelRef, table: CalibrationTable | undefined, options: QuantizeOptions, ctx: RunContext): Promise<QuantizeResult> {
    // Float-compute modes keep activations in float: no format, table, shapes or opset upgrade apply.
    if (options.mode === 'weight-only') return quantizeWeightOnlyModel(model, options, ctx);
    if (options.mode === 'fp16') return convertModelToFloat16(model, options, ctx);
    if (options.format !== 'qdq' && options.format !== 'qoperator') throw errUnsupported(this.id, `--format ${options.format}`, 'formats are qdq and qoperator');
    if (options.format === 'qoperator' && options.activation16Nodes?.length) throw errUnsupported(this.id, '--format qoperator with --a16-nodes', 'QLinear operators are 8-bit; 16-bit activations need --format qdq');
    if (options.format === 'qoperator' && options.mode !== 'static') throw errUnsupported(this.id, '--format qoperator with --mode dynamic', 'dynamic quantization writes DynamicQuantizeMatMul; use --format qdq');
    throwIfAborted(ctx, 'quantization');
    const loaded = loadModel(model.path);
    const inputSha = await sha256Async(loaded.bytes!);
    // A table for another model is refused before anything runs.
    if (table) assertTableMatches(table, inputSha);
    const dims = table?.methodOptions?.inputDims as Record<string, number[]> | undefined;
    ctx.progress({ phase: 'prepare', current: 0, message: 'preparing the model' });
    // Prepared as calibrate prepares it (same shapes from the table's input dims), so tables line up.
    // Only an opset upgrade asks about runtime shapes; no questions, no probe run.
    const questions = shapeQuestions(loaded.proto);
    const shapes: ObservedShapes = questions.length ? await observeShapes(loaded.proto, probeInputs(model.path, graphInputs(loaded.proto.graph), dims), questions) : new Map();
    const prep = prepareModel(loaded.proto, shapes, { needPerAxis: true, equalize: options.equalize });
    let decisions: NodeDecision[];
    let changes: GraphChange[];
    if (options.mode === 'static' && options.storageOnly) {
      // No table needed: only weights change, activations stay float.
      ({ decisions, changes } = storeWeightsInt8(prep.proto, options));
      mergeInto({ decisions, changes }, quantizeBodies(prep.proto, ['If', 'Loop', 'Scan'], (body) => storeWeightsInt8(body, options)));
    } else if (options.mode === 'static') {
      if (!table) throw errInvalidOption('--mode static', 'static quantization needs calibration data', 'Pass --data <dataset> or --calib-table <file>, or use --mode dynamic.');
      if (table.model.preparedSha256 && table.model.preparedSha256 !== (await sha256Async(encodeModel(prep.proto)))) {
        throw errCalibTableMismatch('the model prepares differently than when the table was made (another qforge version?)');
      }
      const floatProto = options.biasCorrection ? structuredClone(prep.proto) : undefined;
      const split = splitRecurrent(options.opTypes);
      ({ decisions, changes } = split.onlyRecurrent ? { decisions: [], changes: [] } : quantizeStaticQdq(prep.proto, table, { ...options, opTypes: split.rest, perAxisAllowed: prep.opset >= 13, opsetRefusal: prep.opsetRefusal }));
      if (split.recurrent) mergeInto({ decisions, changes }, quantizeRecurrent(prep.proto, options));
      // Networks inside If branches (calibrated through the branches' extra outputs).
      mergeInto(
        { decisions, changes },
        quantizeBodies(prep.proto, ['If'], (body) => {
          const r = { decisions: [] as NodeDecision[], changes: [] as GraphChange[] };
          // A branch that never ran on the calibration data has no ranges: its nodes stay float.
          const ran = body.graph.node.some((n) => n.output.some((o) => table.tensors[o]));
          const idleNames = new Set(ran ? [] : body.graph.node.filter((n) => (STATIC_OP_TYPES as readonly string[]).includes(n.opType)).map((n) => n.name || n.output[0]));
          if (!split.onlyRecurrent) mergeInto(r, quantizeStaticQdq(body, table, { ...options, excludeNodes: [...options.excludeNodes, ...idleNames], opTypes: split.rest, perAxisAllowed: prep.opset >= 13, opsetRefusal: prep.opsetRefusal }));
          for (const d of r.decisions) if (idleNames.has(d.node)) d.reason = 'inside an If branch that never ran on the calibration data: no range to quantize with';
          if (split.recurrent) mergeInto(r, quantizeRecurrent(body, options));
          return r;
        }),
      );
      if (floatProto) changes.push(...(await correctBiases(floatProto, prep.proto, options.correctionData, options.correctionSamples ?? 32, ctx)));
      if (options.format === 'qoperator') changes.push(...qdqToQOperator(prep.proto));
    } else if (options.mode === 'dynamic') {
      const split = splitRecurrent(options.opTypes);
      ({ decisions, changes } = split.onlyRecurrent ? { decisions: [], changes: [] } : quantizeDynamic(prep.proto, { ...options, opTypes: split.rest }));
      if (split.recurrent) mergeInto({ decisions, changes }, quantizeRecurrent(prep.proto, options));
      mergeInto(
        { decisions, changes },
        quantizeBodies(prep.proto, ['If', 'Loop', 'Scan'], (body) => {
          const r = { decisions: [] as NodeDecision[], changes: [] as GraphChange[] };
          if (!split.onlyRecurrent) mergeInto(r, quantizeDynamic(body, { ...options, opTypes: split.rest }));
          if (split.recurrent) mergeInto(r, quantizeRecurrent(body, options));
          return r;
        }),
      );
    } else {
      throw errUnsupported(this.id, `--mode ${options.mode}`, 'modes are static and dynamic');
    }
    // Bodies quantized one by one may reuse a name an enclosing scope defines: single assignment.
    const renamed = uniquifyBodyNames(prep.proto);
    if (renamed) changes.push({ kind: 'rename-in-subgraph', detail: `${renamed} value(s) defined inside If/Loop bodies renamed so no name is assigned twice across scopes` });
    ctx.progress({ phase: 'quantize', current: 1, total: 1 });
    if (!decisions.some((d) => d.quantized)) {
      throw errUnsupported(this.id, 'this model', `no node could be quantized (${decisions.map((d) => `${d.node}: ${d.reason}`).slice(0, 3).join('; ') || 'no Conv/MatMul/Gemm nodes'})`);
    }
    // A run cancelled while quantizing leaves no model behind.
    throwIfAborted(ctx, 'quantization');
    ctx.progress({ phase: 'write', current: 0, message: options.output });
    // Encoded once, checked by the runtime from the written file, renamed into place only if accepted.
    return writeQuantizeResult(prep.proto, options.output, { preparation: [...prep.changes, ...changes], decisions }, options.externalData);
  }

  private async benchInputs(model: ModelRef, options: BenchmarkOptions): Promise<Record<string, Tensor>> {
    return (options.dataset ? await firstSample(options.dataset) : await randomInputs(await this.modelInputs(model), 42)).inputs;
  }

  async benchmark(model: ModelRef, options: BenchmarkOptions, ctx: RunContext): Promise<BenchmarkResult> {
    const inputs = await this.benchInputs(model, options);
    const rssBefore = process.memoryUsage().rss;
    const open = async (ref: ModelRef) => {
      const t0 = performance.now();
      const session = await createSession(ref.path, { threads: options.threads, optimization: 'all' });
      return { ref, session, loadTimeMs: performance.now() - t0, samples: [] as number[] };
    };
    const runs = [await open(model)];
    if (options.compare) runs.push(await open(options.compare));
    let peakRss = process.memoryUsage().rss;
    try {
      const series = await measureAlternately(
        runs.map((r) => ({ run: () => runSession(r.session, inputs) })),
        measurementPlan(options),
        {
          beforeRun: () => throwIfAborted(ctx, 'benchmark'),
          afterRun: (done, expected) => {
            peakRss = Math.max(peakRss, process.memoryUsage().rss);
            ctx.progress({ phase: 'benchmark', current: done, total: expected });
          },
        },
      );
      series.forEach((s, k) => runs[k].samples.push(...s));
    } finally {
      for (const r of runs) await r.session.release();
    }
    const ort = loadOrt();
    const toResult = (r: (typeof runs)[number]): ModelBenchmark => {
      const latencyMs = summarizeLatencies(r.samples);
      return { model: r.ref, latencyMs, throughputPerSec: throughputPerSec(latencyMs), loadTimeMs: r.loadTimeMs, peakRssBytes: Math.max(0, peakRss - rssBefore), threads: options.threads };
    };
    const primary = toResult(runs[0]);
    const compare = runs[1] ? toResult(runs[1]) : undefined;
    const speedupEstimate = compare ? estimateSpeedup(runs[0].samples, runs[1].samples) : undefined;
    return {
      backend: this.id,
      runtime: `onnxruntime-node ${ort.env.versions?.node ?? ''}`.trim(),
      target: 'cpu',
      primary,
      compare,
      speedup: speedupEstimate?.median,
      speedupEstimate,
      inputShapes: Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, t.dims])),
    };
  }

  async verify(reference: ModelRef, candidate: ModelRef, dataset: Dataset, options: VerifyOptions, ctx: RunContext): Promise<VerifyResult> {
    const refProto = loadModel(reference.path).proto;
    const candProto = loadModel(candidate.path).proto;
    const outputs = refProto.graph.output.map((o) => o.name);
    const modelInputs = graphInputs(refProto.graph).map((i) => i.name);
    const candOutputs = new Set(candProto.graph.output.map((o) => o.name));
    const missing = outputs.filter((o) => !candOutputs.has(o));
    if (missing.length) throw errInvalidOption('candidate', `it lacks output(s) ${missing.join(', ')} of the reference`, 'Compare a model with its own quantized version.');
    // Per-layer: each quantized activation X in the candidate appears as DequantizeLinear(QuantizeLinear(X)).
    const layerPairs: { ref: string; cand: string; node?: string }[] = [];
    if (options.perLayer) {
      const refNames = new Set(allTensorNames(refProto));
      const producers = new Map(candProto.graph.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
      for (const n of candProto.graph.node) {
        if (n.opType !== 'DequantizeLinear') continue;
        const q = producers.get(n.input[0]);
        // Only the tensor's own dequantizer (same scale and zero point as its Q): a relabeled one reads
        // the same integers as another tensor (x·f + o, quantize-qdq.ts) and is not X itself.
        const own = n.input[1] === q?.input[1] && (n.input[2] ?? '') === (q?.input[2] ?? '');
        if (q?.opType === 'QuantizeLinear' && own && refNames.has(q.input[0]) && !outputs.includes(q.input[0])) layerPairs.push({ ref: q.input[0], cand: n.output[0], node: producers.get(q.input[0])?.name });
      }
    }
    // Outputs made by a saturating activation are also compared on the activation's input.
    const candNames = new Set(allTensorNames(candProto));
    const refProducers = new Map(refProto.graph.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
    const preActs = new Map<string, { tensor: string; op: string }>();
    for (const o of outputs) {
      const p = refProducers.get(o);
      if (p && ['Softmax', 'LogSoftmax', 'Sigmoid'].includes(p.opType) && candNames.has(p.input[0]) && !outputs.includes(p.input[0])) preActs.set(o, { tensor: p.input[0], op: p.opType });
    }
    // Equalization rescaled some activations per channel; compare them on the float model's scale.
    const rescaled = new Map(readEqualizedActivations(candProto));
    const extraRef = [...layerPairs.map((p) => p.ref), ...[...preActs.values()].map((p) => p.tensor)];
    const extraCand = [...layerPairs.map((p) => p.cand), ...[...preActs.values()].map((p) => p.tensor)];
    const refSession = await createSession(extraRef.length ? withOutputs(refProto, extraRef) : reference.path, { optimization: 'all' });
    const candSession = await createSession(extraCand.length ? withOutputs(candProto, extraCand) : candidate.path, { optimization: 'all' });
    const preAcc = new Map([...preActs.values()].map((p) => [p.tensor, new FidelityAccumulator(p.tensor)]));
    const fid = new Map<string, OutputAccumulator>();
    const layerAcc = new Map(layerPairs.map((p) => [p.ref, new FidelityAccumulator(p.ref)]));
    const layerElements = new Map<string, number>();
    const refAcc = new AccuracyAccumulator();
    const candAcc = new AccuracyAccumulator();
    let count = 0;
    let labeled = dataset.description.labeled;
    try {
      for await (const sample of limited(dataset, options.samples)) {
        throwIfAborted(ctx, 'verification');
        const r = await runSession(refSession, sample.inputs);
        const c = await runSession(candSession, sample.inputs);
        for (const o of outputs) {
          const rd = r[o].data as Float32Array;
          const cd = c[o].data as Float32Array;
          const dims = [...r[o].dims].map(Number);
          // Each output is judged by what it means (core's tasks.ts), from its dims and producing op.
          if (!fid.has(o)) fid.set(o, new OutputAccumulator(o, { dims, producer: refProducers.get(o)?.opType, modelInputs }, options));
          fid.get(o)!.add(rd, cd, dims, sample);
        }
        for (const p of preActs.values()) preAcc.get(p.tensor)!.add(r[p.tensor].data as Float32Array, c[p.tensor].data as Float32Array);
        for (const p of layerPairs) {
          const f = rescaled.get(p.ref);
          if (!layerElements.has(p.ref)) layerElements.set(p.ref, r[p.ref].data.length);
          layerAcc.get(p.ref)!.add(r[p.ref].data as Float32Array, f ? unscaleChannels(c[p.cand].data as Float32Array, [...c[p.cand].dims].map(Number), f) : (c[p.cand].data as Float32Array));
        }
        if (sample.label !== undefined) {
          refAcc.add(r[outputs[0]].data as Float32Array, sample.label);
          candAcc.add(c[outputs[0]].data as Float32Array, sample.label);
        } else labeled = false;
        count++;
        ctx.progress({ phase: 'verify', current: count, total: Math.min(options.samples, dataset.description.count ?? options.samples) });
      }
    } finally {
      await refSession.release();
      await candSession.release();
    }
    if (count === 0) throw errDatasetEmpty(dataset.description.source);
    const result: VerifyResult = {
      samples: count,
      labeled,
      outputs: outputs.map((o) => {
        const f = fid.get(o)!.result();
        const pre = preActs.get(o);
        if (pre) {
          const r = preAcc.get(pre.tensor)!.result();
          f.preActivation = { tensor: pre.tensor, op: pre.op, snrDb: r.snrDb, cosine: r.cosine, maxAbsError: r.maxAbsError };
        }
        return f;
      }),
      thresholds: options.thresholds,
      passed: true,
      failures: [],
    };
    if (labeled) {
      result.accuracy = { reference: refAcc.accuracy, candidate: candAcc.accuracy, dropPoints: (refAcc.accuracy - candAcc.accuracy) * 100 };
    }
    if (layerPairs.length) {
      result.layers = layerPairs
        .map((p): LayerError => {
          const f = layerAcc.get(p.ref)!.result();
          return { tensor: p.ref, node: p.node, snrDb: f.snrDb, cosine: f.cosine, maxAbsError: f.maxAbsError, elements: layerElements.get(p.ref) };
        })
        .sort((a, b) => a.snrDb - b.snrDb);
    }
    judgeVerification(result);
    return result;
  }
}

/** Divides channel c (axis 1) by factor[c]: an equalized activation back on the float model's scale. */
function unscaleChannels(data: Float32Array, dims: number[], factor: number[]): Float32Array {
  const channels = dims[1] ?? 1;
  if (channels !== factor.length) return data;
  const inner = dims.slice(2).reduce((a, b) => a * b, 1);
  return Float32Array.from(data, (v, i) => v / factor[Math.floor(i / inner) % channels]);
}

function mergeInto(into: { decisions: NodeDecision[]; changes: GraphChange[] }, more: { decisions: NodeDecision[]; changes: GraphChange[] }): void {
  into.decisions.push(...more.decisions);
  into.changes.push(...more.changes);
}
