// The TensorFlow.js backend: reads Layers and Graph models from disk and picks the fastest engine here.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import {
  AccuracyAccumulator,
  FidelityAccumulator,
  OutputAccumulator,
  TensorStatistics,
  assertFiniteSample,
  assertTableMatches,
  buildCalibrationTable,
  errCalibTableMismatch,
  errModelCorrupt,
  errModelNotFound,
  errRuntimeFailed,
  methodNeedsHistogram,
  modelSizeBytes,
  writeFileAtomic,
  defineCapabilities,
  errDatasetEmpty,
  errInvalidOption,
  errUnsupported,
  firstSample,
  openDataset,
  judgeVerification,
  sha256File,
  summarizeLatencies,
  throughputPerSec,
  throwIfAborted,
  estimateSpeedup,
  measureAlternately,
  measurementPlan,
  type Backend,
  type BenchmarkOptions,
  type CalibrateOptions,
  type LayerError,
  type QuantizeOptions,
  type Sample,
  type Dataset,
  type ModelBenchmark,
  type RunContext,
  type Tensor,
  type VerifyOptions,
  type BackendCapabilities,
  type BenchmarkResult,
  type CalibrationTable,
  type GraphChange,
  type Detection,
  type ModelInfo,
  type ModelRef,
  type QuantizeResult,
  type TensorInfo,
  type VerifyResult,
} from '@qforge/core';
import { readTflite, writeTflite } from '@qforge/tflite';
import type * as TF from '@tensorflow/tfjs';
import { chooseEngine, loadLayersModel, loadTf, readArtifacts } from './engine';
import { graphInputs, lowerGraphModel, type GraphConst, type GraphNode, type GraphSignature } from './graph-lower';
import { IrExecutor, type IrGraph, type IrOp } from './ir';
import { FakeQuantTwin, RANGE_DECAY, trainTwin, type QatRecord } from './qat';
import { lowerLayersModel } from './keras-lower';
import { readModelJson } from './model-json';
import { openRunner, tfliteEdges, tfliteRunner, type ModelRunner } from './runner';
import { convertToFloatTflite, convertToTflite } from './tflite-convert';
import { loadTfliteInterpreter, tfliteRuntimeVersion } from './tflite-runtime';
import { compressLayersModel } from './weight-compress';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE = require('../package.json') as { name: string; version: string };

export const TFJS_CAPABILITIES: BackendCapabilities = defineCapabilities({
  inputFormats: ['tfjs-layers', 'tfjs-graph', 'tflite'],
  outputFormats: ['tflite'],
  verbs: ['inspect', 'calibrate', 'quantize', 'benchmark', 'verify'],
  modes: ['static', 'weight-only'],
  calibrationMethods: ['minmax', 'percentile', 'entropy', 'mse'],
  weightTypes: ['int8'],
  activationTypes: ['int8'],
  granularity: ['per-channel', 'per-tensor'],
  targets: ['tflite-int8'],
  training: ['qat'],
  notes: [
    'TensorFlow.js Layers models → full-integer int8 .tflite per the TFLite quantization spec (BatchNorm folded, ReLU/ReLU6 fused)',
    'calibrates with TensorFlow.js; verifies and benchmarks the .tflite in the real TFLite interpreter (WebAssembly), timed against the fp32 .tflite of the same graph written beside it',
    'engine: tfjs-node when installed, else WebAssembly (SIMD), else pure JavaScript',
    '--mode weight-only: a TensorFlow.js model with int8 per-channel kernels (dequantized on load by qforge\'s loader)',
    'Graph models (converted SavedModels: fused conv/depthwise/matmul, batch norm, pads, pools, concat, mean, element-wise ops; uint8/float16 weights) → int8 .tflite the same way',
    '--qat: quantization-aware training of the fake-quantized twin (tfjs-node, else the cpu engine), then the int8 .tflite',
  ],
});

/** Largest relative difference between the lowered graph and TensorFlow.js before conversion is refused. */
const LOWERING_TOLERANCE = 1e-3;

interface Fp32Twin {
  /** Resolved path of the fp32 .tflite. */
  path: string;
  sha256: string;
  /** SHA-256 of the model file (model.json) both were made from. */
  source: string;
  /** SHA-256 of the int8 .tflite as written. */
  int8Sha256: string;
}

/** Where the fp32 twin of an int8 .tflite goes: `model.int8.tflite` → `model.fp32.tflite`, `m.tflite` → `m.fp32.tflite`. */
export function fp32TwinPath(int8Path: string): string {
  return `${int8Path.replace(/\.tflite$/i, '').replace(/\.int8$/i, '')}.fp32.tflite`;
}

/** Largest absolute difference relative to the largest reference value (∞ when lengths differ). */
function relativeError(got: Float32Array | undefined, want: Float32Array): number {
  if (!got || got.length !== want.length) return Infinity;
  let err = 0;
  let mag = 1e-6;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return Number.isNaN(err) ? Infinity : err / mag;
}

export class TfjsBackend implements Backend {
  readonly id = 'tfjs';
  readonly displayName = 'TensorFlow.js (TFLite int8)';
  readonly packageName = PACKAGE.name;
  readonly version = PACKAGE.version;
  readonly capabilities = TFJS_CAPABILITIES;

  async detect(): Promise<Detection> {
    let version: string;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      version = (require('@tensorflow/tfjs/package.json') as { version: string }).version;
    } catch {
      return { available: false, reason: '@tensorflow/tfjs is not installed', hint: 'npm i @tensorflow/tfjs @tensorflow/tfjs-backend-wasm' };
    }
    const engine = chooseEngine();
    return {
      available: true,
      version,
      runtime: `tfjs ${version} (${engine})`,
      details: {
        engine,
        tfjsNode: engine === 'tensorflow' ? 'installed' : 'not installed (optional; wasm is used)',
        tfliteInterpreter: tfliteRuntimeVersion() ? `@tensorflow/tfjs-tflite ${tfliteRuntimeVersion()} (WebAssembly SIMD, single thread)` : 'not installed: .tflite files cannot be verified or benchmarked',
      },
    };
  }

  async inspect(model: ModelRef): Promise<ModelInfo> {
    if (model.format === 'tflite') return this.inspectTflite(model);
    const json = readModelJson(model.path);
    const topo = json.modelTopology!;
    const opHistogram: Record<string, number> = {};
    let inputs: TensorInfo[] = [];
    if (model.format === 'tfjs-graph' || topo.node) {
      for (const n of topo.node ?? []) opHistogram[n.op] = (opHistogram[n.op] ?? 0) + 1;
      const sig = (json as { signature?: GraphSignature; userDefinedMetadata?: { signature?: GraphSignature } });
      inputs = graphInputs((topo.node ?? []) as GraphNode[], sig.signature ?? sig.userDefinedMetadata?.signature);
    } else {
      const cfg = topo.model_config?.config ?? (topo.config as { layers?: { class_name: string; config: { name: string; batch_input_shape?: (number | null)[] } }[] });
      const layers = Array.isArray(cfg) ? [] : cfg?.layers ?? [];
      for (const l of layers) opHistogram[l.class_name] = (opHistogram[l.class_name] ?? 0) + 1;
      inputs = layers.filter((l) => l.config.batch_input_shape).slice(0, 1).map((l) => ({ name: l.config.name, dtype: 'float32', shape: l.config.batch_input_shape!.map((d) => d ?? 'batch') }));
    }
    let parameterCount = 0;
    for (const g of json.weightsManifest!) for (const w of g.weights) parameterCount += w.shape.reduce((a, b) => a * b, 1);
    const shards = json.weightsManifest!.flatMap((g) => g.paths);
    return {
      path: model.path,
      format: model.format,
      sizeBytes: modelSizeBytes(model),
      sha256: await sha256File(model.path),
      producer: json.generatedBy ?? json.convertedBy ?? undefined,
      inputs,
      outputs: [],
      opHistogram,
      parameterCount,
      notes: [`${shards.length} weight shard(s)`],
    };
  }

  private async inspectTflite(model: ModelRef): Promise<ModelInfo> {
    if (!existsSync(model.path)) throw errModelNotFound(model.path);
    let m: ReturnType<typeof readTflite>;
    try {
      m = readTflite(new Uint8Array(readFileSync(model.path)));
    } catch (e) {
      throw errModelCorrupt(model.path, (e as Error).message);
    }
    const opHistogram: Record<string, number> = {};
    for (const op of m.operators) opHistogram[op.op] = (opHistogram[op.op] ?? 0) + 1;
    const info = (i: number): TensorInfo => ({ name: m.tensors[i].name, dtype: m.tensors[i].type, shape: m.tensors[i].shape });
    const types: Record<string, number> = {};
    for (const t of m.tensors) if (t.data) types[t.type] = (types[t.type] ?? 0) + 1;
    return {
      path: model.path,
      format: 'tflite',
      sizeBytes: statSync(model.path).size,
      sha256: await sha256File(model.path),
      producer: m.description,
      inputs: m.inputs.map(info),
      outputs: m.outputs.map(info),
      opHistogram,
      parameterCount: m.tensors.reduce((a, t) => a + (t.data ? t.shape.reduce((x, y) => x * y, 1) : 0), 0),
      notes: [`TFLite schema v${m.version}, ${m.tensors.length} tensors, constants: ${Object.entries(types).map(([k, v]) => `${v} ${k}`).join(', ')}`],
    };
  }

  async modelInputs(model: ModelRef): Promise<TensorInfo[]> {
    return (await this.inspect(model)).inputs;
  }

  /** The model lowered to TFLite-shaped ops, checked against TensorFlow.js on `check`. */
  private async lower(model: ModelRef, check: Record<string, Tensor>): Promise<{ graph: IrGraph; exec: IrExecutor }> {
    if (model.format === 'tflite') throw errUnsupported(this.id, 'calibrate or quantize a .tflite file', 'the input must be the TensorFlow.js model the .tflite is made from');
    if (model.format === 'tfjs-graph') return this.lowerGraph(model, check);
    if (model.format !== 'tfjs-layers') throw errUnsupported(this.id, `convert ${model.format} to .tflite`, 'this backend converts TensorFlow.js Layers and Graph models');
    const { tf } = await loadTf();
    const layers = await loadLayersModel(model.path);
    try {
      const graph = lowerLayersModel(layers);
      const input = Object.values(check)[0];
      const ref = tf.tidy(() => {
        const y = layers.predict(tf.tensor(input.data as Float32Array, graph.shapes.get(graph.inputs[0])!));
        return (Array.isArray(y) ? y : [y]).map((t) => t.dataSync() as Float32Array);
      });
      return this.checkedExecutor(tf, model, graph, input, ref);
    } finally {
      layers.dispose();
    }
  }

  /**
   * A graph model lowered to the same IR: weights decoded from the manifest (uint8/float16 storage
   * expanded as TensorFlow.js does), every node's shape read from one run of the graph itself on
   * the probe input (so symbolic sizes take the data's), and the result checked against that run.
   */
  private async lowerGraph(model: ModelRef, check: Record<string, Tensor>): Promise<{ graph: IrGraph; exec: IrExecutor }> {
    const { tf } = await loadTf();
    const artifacts = readArtifacts(model.path);
    const nodes = (artifacts.modelTopology as { node?: GraphNode[] } | undefined)?.node ?? [];
    let gm: TF.GraphModel;
    try {
      gm = await tf.loadGraphModel({ load: async () => artifacts });
    } catch (e) {
      throw errModelCorrupt(model.path, `TensorFlow.js cannot build the graph: ${(e as Error).message}`);
    }
    try {
      const consts = new Map<string, GraphConst>();
      for (const [name, t] of Object.entries(tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!))) {
        consts.set(name, { values: t.dtype === 'int32' ? Int32Array.from(t.dataSync()) : Float32Array.from(t.dataSync()), shape: t.shape });
        t.dispose();
      }
      const input = Object.values(check)[0];
      const probe = nodes.filter((n) => n.op !== 'Const' && n.op !== 'Placeholder').map((n) => n.name);
      const outputs = gm.outputs.map((o) => o.name.replace(/:0$/, ''));
      const shapes = new Map<string, number[]>(nodes.filter((n) => n.op === 'Placeholder').map((n) => [n.name, [...input.dims]]));
      let ref: Float32Array[];
      try {
        ref = tf.tidy(() => {
          const xs = Object.fromEntries(gm.inputs.map((i) => [i.name, tf.tensor(input.data as Float32Array, input.dims)]));
          const ys = gm.execute(xs, probe) as TF.Tensor[];
          probe.forEach((n, k) => shapes.set(n, ys[k].shape));
          return outputs.map((o) => ys[probe.indexOf(o)].dataSync() as Float32Array);
        });
      } catch (e) {
        if ((e as { code?: string }).code) throw e;
        throw errRuntimeFailed(this.id, 'convert', `TensorFlow.js cannot run the graph on the probe input: ${(e as Error).message}`, { path: model.path });
      }
      const json = readModelJson(model.path) as { signature?: GraphSignature; userDefinedMetadata?: { signature?: GraphSignature } };
      const graph = lowerGraphModel({ nodes, consts, shapes, outputs });
      const declared = graphInputs(nodes, json.signature ?? json.userDefinedMetadata?.signature)[0];
      if (declared?.shape.slice(1).some((d) => typeof d !== 'number')) graph.changes.push({ kind: 'fix-input-shape', node: declared.name, detail: `symbolic input [${declared.shape}] fixed to the data's [${input.dims}] in the .tflite` });
      return this.checkedExecutor(tf, model, graph, input, ref);
    } finally {
      gm.dispose();
    }
  }

  /** The lowered graph must compute what TensorFlow.js computes, or every number after is void. */
  private checkedExecutor(tf: typeof TF, model: ModelRef, graph: IrGraph, input: Tensor, ref: Float32Array[]): { graph: IrGraph; exec: IrExecutor } {
    const exec = new IrExecutor(tf, graph);
    let ir: Record<string, Float32Array>;
    try {
      ir = exec.run({ [graph.inputs[0]]: input.data as Float32Array });
    } catch (e) {
      exec.dispose();
      throw e;
    }
    graph.outputs.forEach((o, k) => {
      const a = ir[o];
      const b = ref[k];
      let err = 0;
      let mag = 1e-6;
      for (let i = 0; i < b.length; i++) {
        err = Math.max(err, Math.abs(a[i] - b[i]));
        mag = Math.max(mag, Math.abs(b[i]));
      }
      if (!(a.length === b.length && err / mag <= LOWERING_TOLERANCE)) {
        exec.dispose();
        throw errRuntimeFailed(this.id, 'convert', `the converted graph differs from TensorFlow.js at output ${k} (max error ${err.toExponential(2)} of ${mag.toExponential(2)})`, { path: model.path });
      }
    });
    return { graph, exec };
  }

  async calibrate(model: ModelRef, dataset: Dataset, options: CalibrateOptions, ctx: RunContext): Promise<CalibrationTable> {
    const iterator = dataset.samples({ limit: options.samples })[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done) throw errDatasetEmpty(dataset.description.source);
    assertFiniteSample(first.value);
    const { graph, exec } = await this.lower(model, first.value.inputs);
    const bins = methodNeedsHistogram(options.method) || options.keepHistograms ? 2 * (options.bins ?? 2048) : undefined;
    const stats = new Map<string, TensorStatistics>([...graph.shapes.keys()].map((t) => [t, new TensorStatistics({ movingAverage: options.movingAverage, histogramBins: bins })]));
    const total = Math.min(options.samples, dataset.description.count ?? options.samples);
    let count = 0;
    try {
      for (let step: IteratorResult<Sample> = first; !step.done; step = await iterator.next()) {
        throwIfAborted(ctx, 'calibration');
        assertFiniteSample(step.value);
        const input = Object.values(step.value.inputs)[0];
        exec.run({ [graph.inputs[0]]: input.data as Float32Array }, (id, data) => stats.get(id)?.update(data));
        ctx.progress({ phase: 'calibrate', current: ++count, total });
      }
    } finally {
      exec.dispose();
    }
    return buildCalibrationTable({ backend: this.id, model: { sha256: await sha256File(model.path), format: model.format }, options, sampleCount: count, dataset: dataset.description, stats });
  }

  async quantize(model: ModelRef, table: CalibrationTable | undefined, options: QuantizeOptions, ctx: RunContext): Promise<QuantizeResult> {
    throwIfAborted(ctx, 'quantization');
    if (options.mode === 'weight-only') return this.compressWeights(model, options, ctx);
    if (options.mode !== 'static') throw errUnsupported(this.id, `--mode ${options.mode}`, 'full-integer TFLite needs calibrated activations: use --mode static with --data (or --mode weight-only for an int8-weight TensorFlow.js model)');
    if (options.activationType !== 'int8' || options.weightType !== 'int8') throw errInvalidOption('--activation-type/--weight-type', 'TFLite int8 uses int8 activations and int8 weights', 'Leave the types at the tflite-int8 target defaults.');
    if (options.excludeNodes.length) throw errUnsupported(this.id, '--exclude-nodes', 'a full-integer .tflite has no float fallback; remove the layers from the model or use the ONNX Runtime backend');
    if (!table) throw errInvalidOption('--data', 'full-integer TFLite conversion needs a calibration table', 'Pass --data (calibration samples) or --calib-table.');
    ctx.progress({ phase: 'quantize', current: 0, message: 'converting to TFLite int8' });
    // The model is read (and refused if broken) before the table is matched against it.
    const probe = await this.firstInputs(model, undefined);
    const lowered = await this.lower(model, probe);
    let floatOutputs: Record<string, Float32Array>;
    try {
      floatOutputs = lowered.exec.run({ [lowered.graph.inputs[0]]: Object.values(probe)[0].data as Float32Array });
    } finally {
      lowered.exec.dispose();
    }
    let graph = lowered.graph;
    const modelSha = await sha256File(model.path);
    assertTableMatches(table, modelSha);
    let ranges = new Map<string, [number, number]>();
    const missing: string[] = [];
    for (const id of graph.shapes.keys()) {
      const t = table.tensors[id];
      if (t) ranges.set(id, [...t.range]);
      else missing.push(id);
    }
    if (missing.length) throw errCalibTableMismatch(`the table has no range for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
    const training: GraphChange[] = [];
    if (options.qat) {
      const trained = await this.quantizationAwareTraining(graph, ranges, { modelSha, table, options }, ctx);
      graph = trained.graph;
      ranges = trained.ranges;
      training.push(trained.change);
    }
    let inputMeans: Map<string, Float64Array> | undefined;
    if (options.biasCorrection) {
      const exec = new IrExecutor((await loadTf()).tf, graph);
      try {
        inputMeans = await this.channelMeans(graph, exec, options, ctx);
      } finally {
        exec.dispose();
      }
    }
    const conversion = convertToTflite(graph, ranges, {
      ioType: options.ioType ?? 'float32',
      perChannel: options.perChannel,
      inputMeans,
      description: `qforge ${this.version}: int8 from ${basename(model.path)} (${table.method}, ${table.sampleCount} samples)`,
    });
    const bytes = writeTflite(conversion.model);
    // The interpreter must accept and run the file before it is written anywhere.
    const check = tfliteRunner(await loadTfliteInterpreter(bytes, { name: options.output }), tfliteEdges(bytes));
    try {
      check.predict(probe);
    } finally {
      check.dispose();
    }
    await writeFileAtomic(options.output, bytes);
    // The fp32 reference is the model as given (before quantization-aware training), so a run's
    // benchmark compares int8 with fp32 in one interpreter.
    const reference = await this.writeFp32Twin(model, modelSha, lowered.graph, options.output, bytes, { probe, expected: floatOutputs });
    ctx.progress({ phase: 'quantize', current: 1, total: 1 });
    return {
      model: { path: options.output, format: 'tflite' },
      sizeBytes: bytes.byteLength,
      preparation: [...graph.changes, ...training, ...conversion.changes, ...(reference.change ? [reference.change] : [])],
      decisions: conversion.decisions,
      // The fp32 twin stays beside the int8 file in the run folder and is not an artifact: copied
      // beside `-o` under its fixed name it could overwrite a user's file.
    };
  }

  /** fp32 .tflite twins written by this instance, by resolved int8 path. */
  private readonly fp32Twins = new Map<string, Fp32Twin>();

  /**
   * Writes the float32 .tflite of `graph` beside the int8 file (`fp32TwinPath`), after checking
   * it in the interpreter against the float graph's outputs on the probe. One twin per source model
   * and folder is enough: the variants a run writes beside its model (without a correction, latency
   * candidates) share it rather than leave copies behind. A twin the interpreter refuses or that
   * disagrees is not written, and the change says why.
   */
  private async writeFp32Twin(model: ModelRef, modelSha: string, graph: IrGraph, output: string, int8: Uint8Array, check: { probe: Record<string, Tensor>; expected: Record<string, Float32Array> }): Promise<{ path?: string; change?: GraphChange }> {
    const int8Sha256 = createHash('sha256').update(int8).digest('hex');
    for (const t of this.fp32Twins.values()) {
      if (t.source === modelSha && dirname(t.path) === dirname(resolve(output)) && existsSync(t.path) && (await sha256File(t.path)) === t.sha256) {
        this.fp32Twins.set(resolve(output), { ...t, int8Sha256 });
        return { path: t.path };
      }
    }
    const path = resolve(fp32TwinPath(output));
    const bytes = writeTflite(convertToFloatTflite(graph, { description: `qforge ${this.version}: fp32 reference of ${basename(model.path)} (same operators as the int8 .tflite)` }).model);
    let it: ModelRunner | undefined;
    try {
      it = tfliteRunner(await loadTfliteInterpreter(bytes, { name: path }), tfliteEdges(bytes));
      const got = it.predict(check.probe);
      graph.outputs.forEach((o, k) => {
        const err = relativeError(got[it!.outputNames[k]], check.expected[o]);
        if (!(err <= LOWERING_TOLERANCE)) throw new Error(`output ${k} differs from the float graph by ${err.toExponential(2)} of its largest value`);
      });
    } catch (e) {
      return { change: { kind: 'fp32-reference-not-written', node: '*', detail: `the fp32 .tflite was not written (${(e as Error).message}); benchmarks compare with TensorFlow.js, labeled cross-runtime` } };
    } finally {
      it?.dispose();
    }
    await writeFileAtomic(path, bytes);
    this.fp32Twins.set(resolve(output), { path, sha256: createHash('sha256').update(bytes).digest('hex'), source: modelSha, int8Sha256 });
    return { path };
  }

  /**
   * The fp32 .tflite to time an int8 .tflite against when `compare` is the TensorFlow.js model it
   * was made from in this process (a quantize run's own benchmark): the same interpreter on both
   * sides. Anything else (another process, a changed file) keeps the comparison asked for.
   */
  private async sameRuntimeReference(model: ModelRef, compare: ModelRef | undefined): Promise<ModelRef | undefined> {
    if (!compare || model.format !== 'tflite' || (compare.format !== 'tfjs-layers' && compare.format !== 'tfjs-graph')) return undefined;
    const twin = this.fp32Twins.get(resolve(model.path));
    if (!twin || !existsSync(twin.path) || !existsSync(compare.path)) return undefined;
    const [source, int8, fp32] = await Promise.all([sha256File(compare.path), sha256File(model.path), sha256File(twin.path)]);
    return source === twin.source && int8 === twin.int8Sha256 && fp32 === twin.sha256 ? { path: twin.path, format: 'tflite' } : undefined;
  }

  /**
   * `--qat`: fine-tunes the fake-quantized twin of the lowered graph on the labeled training data
   * (`correctionData`) and returns the trained graph with its tracked ranges. One training per
   * model, table and settings in this process: the runs that measure corrections reuse it.
   */
  private async quantizationAwareTraining(graph: IrGraph, ranges: Map<string, [number, number]>, key: { modelSha: string; table: CalibrationTable; options: QuantizeOptions }, ctx: RunContext): Promise<{ graph: IrGraph; ranges: Map<string, [number, number]>; change: GraphChange }> {
    const { options, table } = key;
    const data = options.correctionData;
    if (!data) throw errInvalidOption('--qat', 'quantization-aware training needs labeled training data', 'Pass --data <labeled folder> or --data mnist:train.');
    if (!data.description.labeled) throw errInvalidOption('--data', `quantization-aware training needs labels; ${data.description.source} has none`, 'Pass a labeled folder (one sub-folder per class) or mnist:train.');
    const id = JSON.stringify([key.modelSha, options.qat, options.perChannel, table.method, table.sampleCount, table.createdAt ?? '', data.description.source]);
    let trained = this.trainedCache.get(id);
    if (!trained) {
      const { tf, engine } = await loadTf();
      // The wasm engine has no Conv2D/DepthwiseConv2d gradient kernels: train on tfjs-node when it
      // loaded, else on the pure-JavaScript cpu engine, and switch back afterwards.
      const trainOn = engine === 'tensorflow' ? 'tensorflow' : 'cpu';
      if (trainOn !== engine) {
        await tf.setBackend(trainOn);
        // The cpu engine greets its first tensor with an "install tfjs-node" banner on stdout;
        // qforge chose it on purpose and the report names it.
        (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
      }
      const twin = new FakeQuantTwin(tf, graph, ranges, options.perChannel);
      try {
        const record = await trainTwin(tf, twin, data, options.qat!, ctx, trainOn === 'tensorflow' ? 'tfjs-node' : 'cpu');
        trained = { graph: twin.trainedGraph(), ranges: new Map(twin.ranges), record };
      } finally {
        twin.dispose();
        if (trainOn !== engine) await tf.setBackend(engine);
      }
      this.trainedCache.set(id, trained);
    }
    const r = trained.record;
    const q = options.qat!;
    return {
      graph: { ...trained.graph, ops: trained.graph.ops.map((op) => ('kernel' in op ? ({ ...op, kernel: Float32Array.from(op.kernel), bias: Float32Array.from(op.bias) } as IrOp) : op)) },
      ranges: new Map([...trained.ranges].map(([k, v]) => [k, [v[0], v[1]] as [number, number]])),
      change: {
        kind: 'quantization-aware-training',
        node: '*',
        detail: `fine-tuned the fake-quantized model ${r.epochs} epoch(s), ${r.steps} steps of ${q.batchSize} (${r.samplesPerEpoch} samples of ${data.description.source} per epoch, Adam lr ${q.learningRate}) on the ${r.engine} engine in ${(r.durationMs / 1000).toFixed(1)} s: loss ${r.firstLoss.toFixed(4)} → ${r.lastLoss.toFixed(4)}, last-epoch training accuracy ${(r.lastEpochAccuracy * 100).toFixed(2)}%; activation ranges tracked (moving average ${RANGE_DECAY})`,
      },
    };
  }

  private readonly trainedCache = new Map<string, { graph: IrGraph; ranges: Map<string, [number, number]>; record: QatRecord }>();

  /** `--mode weight-only`: a TensorFlow.js model with int8 per-channel kernels, dequantized on load. */
  private async compressWeights(model: ModelRef, options: QuantizeOptions, ctx: RunContext): Promise<QuantizeResult> {
    if (model.format !== 'tfjs-layers' && model.format !== 'tfjs-graph') throw errUnsupported(this.id, `--mode weight-only on ${model.format}`, 'weight compression reads TensorFlow.js models');
    if (!options.output.endsWith('.json')) throw errInvalidOption('--output', `weight-only output ${options.output} must be a .json (model.json) path`, 'Write it as e.g. -o web/model.int8.json; the weights go beside it.');
    const { tf } = await loadTf();
    ctx.progress({ phase: 'quantize', current: 0, message: 'compressing weights' });
    const artifacts = readArtifacts(model.path);
    const r = await compressLayersModel(tf, model.path, options.output, artifacts);
    // The compressed model must load and run before it is reported.
    const check = await openRunner({ path: options.output, format: model.format });
    try {
      check.predict(await this.firstInputs(model, undefined));
    } finally {
      check.dispose();
    }
    ctx.progress({ phase: 'quantize', current: 1, total: 1 });
    return { model: { path: options.output, format: model.format }, sizeBytes: r.sizeBytes, preparation: [], decisions: r.decisions, artifacts: { [r.shard]: 'int8 weight shard' } };
  }

  /** Per-channel means of every weighted layer's input over the correction data (float graph). */
  private async channelMeans(graph: IrGraph, exec: IrExecutor, options: QuantizeOptions, ctx: RunContext): Promise<Map<string, Float64Array>> {
    if (!options.correctionData) throw errInvalidOption('--bias-correction', 'bias correction needs the calibration data', 'Pass --data, or --no-bias-correction.');
    const wanted = new Set(graph.ops.filter((op) => op.kind === 'conv2d' || op.kind === 'depthwise' || op.kind === 'dense').map((op) => op.inputs[0]));
    const sums = new Map<string, Float64Array>();
    const limit = options.correctionSamples ?? 32;
    let count = 0;
    for await (const sample of options.correctionData.samples({ limit })) {
      throwIfAborted(ctx, 'bias correction');
      assertFiniteSample(sample);
      exec.run({ [graph.inputs[0]]: Object.values(sample.inputs)[0].data as Float32Array }, (id, data) => {
        const shape = graph.shapes.get(id)!;
        const c = shape[shape.length - 1];
        const sum = sums.get(id) ?? new Float64Array(c);
        for (let i = 0; i < data.length; i++) sum[i % c] += data[i];
        sums.set(id, sum);
      }, wanted);
      ctx.progress({ phase: 'quantize', current: ++count, total: limit, message: 'bias correction' });
    }
    if (count === 0) throw errDatasetEmpty(options.correctionData.description.source);
    for (const [id, sum] of sums) {
      const shape = graph.shapes.get(id)!;
      const perChannel = (shape.reduce((a, b) => a * b, 1) / shape[shape.length - 1]) * count;
      for (let c = 0; c < sum.length; c++) sum[c] /= perChannel;
    }
    return sums;
  }

  private async firstInputs(model: ModelRef, dataset: Dataset | undefined): Promise<Record<string, Tensor>> {
    return (await firstSample(dataset ?? openDataset('random:42', { inputs: await this.modelInputs(model) }))).inputs;
  }

  async benchmark(model: ModelRef, options: BenchmarkOptions, ctx: RunContext): Promise<BenchmarkResult> {
    const { engine, tf } = await loadTf();
    const inputs = await this.firstInputs(options.compare && model.format === 'tflite' ? options.compare : model, options.dataset);
    const rssBefore = process.memoryUsage().rss;
    const open = async (ref: ModelRef) => {
      const t0 = performance.now();
      const m = await openRunner(ref);
      return { ref, m, loadTimeMs: performance.now() - t0, samples: [] as number[] };
    };
    // A quantize run asks for "the fp32 model": its fp32 .tflite, in the interpreter the int8 one runs in.
    const reference = await this.sameRuntimeReference(model, options.compare);
    if (reference) ctx.logger.debug(`benchmark: ${basename(model.path)} against its fp32 .tflite ${reference.path} (same interpreter) instead of ${options.compare!.path}`);
    const runs = [await open(model)];
    const compareRef = reference ?? options.compare;
    if (compareRef) runs.push(await open(compareRef));
    let peak = process.memoryUsage().rss;
    try {
      const series = await measureAlternately(
        // predict is synchronous for both engines: the time includes the computation.
        runs.map((r) => ({ run: () => r.m.predict(inputs) })),
        measurementPlan(options),
        {
          beforeRun: () => throwIfAborted(ctx, 'benchmark'),
          afterRun: (done, expected) => {
            peak = Math.max(peak, process.memoryUsage().rss);
            ctx.progress({ phase: 'benchmark', current: done, total: expected });
          },
        },
      );
      series.forEach((s, k) => runs[k].samples.push(...s));
    } finally {
      for (const r of runs) r.m.dispose();
    }
    // Both run single-threaded here: tfjs wasm has no threads in Node, and the TFLite runtime is
    // loaded in its single-threaded build.
    const toResult = (r: (typeof runs)[number]): ModelBenchmark => {
      const latencyMs = summarizeLatencies(r.samples);
      return { model: r.ref, latencyMs, throughputPerSec: throughputPerSec(latencyMs), loadTimeMs: r.loadTimeMs, peakRssBytes: Math.max(0, peak - rssBefore), threads: 1 };
    };
    const primary = toResult(runs[0]);
    const compare = runs[1] ? toResult(runs[1]) : undefined;
    const runtimeOf = (f: ModelRef['format']) => (f === 'tflite' ? `tflite-wasm ${tfliteRuntimeVersion() ?? '?'}` : `tfjs ${tf.version.tfjs} (${engine})`);
    const runtimes = runs.map((r) => runtimeOf(r.ref.format));
    const runtime = [...new Set(runtimes)].join(' vs ');
    const speedupEstimate = compare ? estimateSpeedup(runs[0].samples, runs[1].samples) : undefined;
    // An int8 .tflite timed against the TensorFlow.js model (asked for by name, or no fp32 .tflite
    // at hand): the ratio mixes two runtimes with quantization, and says so.
    const crossRuntime = compare && runtimes[0] !== runtimes[1] ? { primary: runtimes[0], compare: runtimes[1] } : undefined;
    const inputShapes = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, t.dims]));
    return { backend: this.id, runtime, target: engine, primary, compare, speedup: speedupEstimate?.median, speedupEstimate, ...(crossRuntime ? { crossRuntime } : {}), inputShapes };
  }

  async verify(reference: ModelRef, candidate: ModelRef, dataset: Dataset, options: VerifyOptions, ctx: RunContext): Promise<VerifyResult> {
    const ref = await openRunner(reference);
    const cand = await openRunner(candidate);
    // Per layer: the .tflite's int8 activations (made extra outputs of a copy of the model) against
    // the same tensors of the float graph it was converted from.
    // Without --per-layer only the tensors before a final Softmax/Sigmoid are exposed, so every
    // verification of a .tflite reports the same pre-activation SNR (corrections compare on it).
    const layers = (reference.format === 'tfjs-layers' || reference.format === 'tfjs-graph') && candidate.format === 'tflite' ? await this.layerProbe(reference, candidate, dataset, Boolean(options.perLayer)) : undefined;
    const fid = new Map<string, OutputAccumulator>();
    // Output dims for task detection: the .tflite declares them; otherwise one row of values per sample.
    const declared = candidate.format === 'tflite' ? (await this.inspectTflite(candidate)).outputs.map((o) => o.shape.map(Number)) : [];
    const dimsOf = (k: number, length: number): number[] => {
      const d = declared[k];
      return d && d.length && d.every((x) => x > 0) && d.reduce((a, b) => a * b, 1) === length ? d : [1, length];
    };
    const layerAcc = new Map<string, FidelityAccumulator>();
    const refAcc = new AccuracyAccumulator();
    const candAcc = new AccuracyAccumulator();
    let count = 0;
    let labeled = dataset.description.labeled;
    try {
      for await (const sample of dataset.samples({ limit: options.samples })) {
        throwIfAborted(ctx, 'verification');
        assertFiniteSample(sample);
        const r = ref.predict(sample.inputs);
        const c = cand.predict(sample.inputs);
        ref.outputNames.forEach((o, k) => {
          const co = cand.outputNames[k];
          if (!c[co] || c[co].length !== r[o].length) throw errInvalidOption('candidate', `output ${k} has ${c[co]?.length ?? 0} values, the reference ${r[o].length}`);
          const dims = dimsOf(k, r[o].length);
          // Each output is judged by what it means (core's tasks.ts); the lowered graph names a final Softmax/Sigmoid.
          if (!fid.has(o)) fid.set(o, new OutputAccumulator(o, { dims, producer: layers?.preActivation.get(layers.exec.graph.outputs[k])?.op }, options));
          fid.get(o)!.add(r[o], c[co], dims, sample);
        });
        if (layers) {
          const floatValues = new Map<string, Float32Array>();
          layers.exec.run({ [layers.exec.graph.inputs[0]]: Object.values(sample.inputs)[0].data as Float32Array }, (id, d) => floatValues.set(id, Float32Array.from(d)), new Set(layers.names.keys()));
          const q = layers.runner.predict(sample.inputs);
          for (const [id, out] of layers.names) {
            if (!layerAcc.has(id)) layerAcc.set(id, new FidelityAccumulator(id));
            layerAcc.get(id)!.add(floatValues.get(id)!, q[out]);
          }
        }
        if (sample.label !== undefined) {
          refAcc.add(r[ref.outputNames[0]], sample.label);
          candAcc.add(c[cand.outputNames[0]], sample.label);
        } else labeled = false;
        ctx.progress({ phase: 'verify', current: ++count, total: Math.min(options.samples, dataset.description.count ?? options.samples) });
      }
    } finally {
      ref.dispose();
      cand.dispose();
      layers?.runner.dispose();
      layers?.exec.dispose();
    }
    if (count === 0) throw errDatasetEmpty(dataset.description.source);
    const result: VerifyResult = { samples: count, labeled, outputs: [...fid.values()].map((f) => f.result()), thresholds: options.thresholds, passed: true, failures: [] };
    if (layers) {
      // Outputs behind a saturating activation are also compared before it.
      for (const [k, f] of result.outputs.entries()) {
        const pre = layers.preActivation.get(layers.exec.graph.outputs[k]);
        const acc = pre && layerAcc.get(pre.tensor);
        if (pre && acc) {
          const r = acc.result();
          f.preActivation = { tensor: pre.tensor, op: pre.op, snrDb: r.snrDb, cosine: r.cosine, maxAbsError: r.maxAbsError };
        }
      }
      if (options.perLayer)
        result.layers = [...layerAcc.entries()]
        .filter(([id]) => !layers.exec.graph.outputs.includes(id))
        .map(([id, acc]): LayerError => {
          const f = acc.result();
          return { tensor: id, node: layers.nodes.get(id), opType: layers.opTypes.get(id), snrDb: f.snrDb, cosine: f.cosine, maxAbsError: f.maxAbsError };
        })
        .sort((a, b) => a.snrDb - b.snrDb);
    }
    if (labeled) result.accuracy = { reference: refAcc.accuracy, candidate: candAcc.accuracy, dropPoints: (refAcc.accuracy - candAcc.accuracy) * 100 };
    return judgeVerification(result);
  }

  /** A copy of the .tflite exposing every int8 activation that has a float twin in the lowered graph. */
  private async layerProbe(reference: ModelRef, candidate: ModelRef, dataset: Dataset, allLayers: boolean) {
    const sample = await firstSample(dataset);
    const { graph, exec } = await this.lower(reference, sample.inputs);
    const preActivationInputs = new Set(graph.ops.filter((op) => (op.kind === 'softmax' || op.kind === 'logistic') && graph.outputs.includes(op.output)).map((op) => op.inputs[0]));
    const bytes = new Uint8Array(readFileSync(candidate.path));
    const m = readTflite(bytes);
    const names = new Map<string, string>();
    const extra: number[] = [];
    m.tensors.forEach((t, i) => {
      if (t.type === 'int8' && !t.data && graph.shapes.has(t.name) && !m.outputs.includes(i) && (allLayers || preActivationInputs.has(t.name))) {
        names.set(t.name, t.name);
        extra.push(i);
      }
    });
    if (!names.size) {
      exec.dispose();
      return undefined;
    }
    const probe = writeTflite({ ...m, outputs: [...m.outputs, ...extra] });
    const it = await loadTfliteInterpreter(probe, { name: `${candidate.path} (per-layer copy)` });
    const edges = tfliteEdges(probe);
    const runner = tfliteRunner(it, edges);
    // Interpreter output names are the tensor names; the first ones are the model's own outputs.
    const byIndex = new Map(extra.map((ti, k) => [m.tensors[ti].name, runner.outputNames[m.outputs.length + k]]));
    for (const [id] of names) names.set(id, byIndex.get(id)!);
    const nodes = new Map<string, string>();
    const opTypes = new Map<string, string>();
    const preActivation = new Map<string, { tensor: string; op: string }>();
    for (const op of graph.ops) {
      nodes.set(op.output, op.layer);
      opTypes.set(op.output, op.kind);
      if ((op.kind === 'softmax' || op.kind === 'logistic') && graph.outputs.includes(op.output)) preActivation.set(op.output, { tensor: op.inputs[0], op: op.kind === 'softmax' ? 'Softmax' : 'Sigmoid' });
    }
    return { exec, runner, names, nodes, opTypes, preActivation };
  }
}
