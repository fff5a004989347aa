// The TensorFlow.js backend: reads Layers and Graph models from disk and picks the fastest engine here.
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  AccuracyAccumulator,
  FidelityAccumulator,
  assertFiniteSample,
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
  type Backend,
  type BenchmarkOptions,
  type Dataset,
  type ModelBenchmark,
  type RunContext,
  type Tensor,
  type VerifyOptions,
  type BackendCapabilities,
  type BenchmarkResult,
  type CalibrationTable,
  type Detection,
  type ModelInfo,
  type ModelRef,
  type QuantizeResult,
  type TensorInfo,
  type VerifyResult,
} from '@qforge/core';
import { chooseEngine, loadTf, loadTfModel } from './engine';
import { readModelJson } from './model-json';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE = require('../package.json') as { name: string; version: string };

export const TFJS_CAPABILITIES: BackendCapabilities = defineCapabilities({
  inputFormats: ['tfjs-layers', 'tfjs-graph'],
  outputFormats: ['tflite'],
  verbs: ['inspect', 'benchmark', 'verify'],
  targets: ['tflite-int8'],
  notes: [
    'inspects TensorFlow.js Layers and Graph models from disk (no tfjs-node needed)',
    'engine: tfjs-node when installed, else WebAssembly (SIMD), else pure JavaScript',
    'benchmarks and verifies TensorFlow.js models against each other on the engine above',
    'int8 .tflite conversion and calibration are not implemented in this release: they fail with E_UNSUPPORTED',
  ],
});

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
      details: { engine, tfjsNode: engine === 'tensorflow' ? 'installed' : 'not installed (optional; wasm is used)' },
    };
  }

  async inspect(model: ModelRef): Promise<ModelInfo> {
    const json = readModelJson(model.path);
    const topo = json.modelTopology!;
    const opHistogram: Record<string, number> = {};
    let inputs: TensorInfo[] = [];
    if (model.format === 'tfjs-graph' || topo.node) {
      for (const n of topo.node ?? []) opHistogram[n.op] = (opHistogram[n.op] ?? 0) + 1;
      inputs = (topo.node ?? []).filter((n) => n.op === 'Placeholder').map((n) => ({ name: n.name, dtype: 'float32', shape: [] }));
    } else {
      const cfg = topo.model_config?.config ?? (topo.config as { layers?: { class_name: string; config: { name: string; batch_input_shape?: (number | null)[] } }[] });
      const layers = Array.isArray(cfg) ? [] : cfg?.layers ?? [];
      for (const l of layers) opHistogram[l.class_name] = (opHistogram[l.class_name] ?? 0) + 1;
      inputs = layers.filter((l) => l.config.batch_input_shape).slice(0, 1).map((l) => ({ name: l.config.name, dtype: 'float32', shape: l.config.batch_input_shape!.map((d) => d ?? 'batch') }));
    }
    let parameterCount = 0;
    for (const g of json.weightsManifest!) for (const w of g.weights) parameterCount += w.shape.reduce((a, b) => a * b, 1);
    const shards = json.weightsManifest!.flatMap((g) => g.paths).map((p) => join(dirname(model.path), p));
    return {
      path: model.path,
      format: model.format,
      sizeBytes: statSync(model.path).size + shards.reduce((a, s) => a + statSync(s).size, 0),
      sha256: await sha256File(model.path),
      producer: json.generatedBy ?? json.convertedBy ?? undefined,
      inputs,
      outputs: [],
      opHistogram,
      parameterCount,
      notes: [`${shards.length} weight shard(s)`],
    };
  }

  async modelInputs(model: ModelRef): Promise<TensorInfo[]> {
    return (await this.inspect(model)).inputs;
  }

  private unsupported(verb: string): never {
    throw errUnsupported(this.id, verb, 'TensorFlow.js → int8 .tflite conversion is not implemented in this release');
  }
  async calibrate(): Promise<CalibrationTable> {
    return this.unsupported('calibrate');
  }
  async quantize(): Promise<QuantizeResult> {
    return this.unsupported('quantize');
  }

  private async firstInputs(model: ModelRef, dataset: Dataset | undefined): Promise<Record<string, Tensor>> {
    return (await firstSample(dataset ?? openDataset('random:42', { inputs: await this.modelInputs(model) }))).inputs;
  }

  async benchmark(model: ModelRef, options: BenchmarkOptions, ctx: RunContext): Promise<BenchmarkResult> {
    const { engine, tf } = await loadTf();
    const inputs = await this.firstInputs(model, options.dataset);
    const rssBefore = process.memoryUsage().rss;
    const open = async (ref: ModelRef) => {
      const t0 = performance.now();
      const m = await loadTfModel(ref.path, ref.format as 'tfjs-layers' | 'tfjs-graph');
      return { ref, m, loadTimeMs: performance.now() - t0, samples: [] as number[] };
    };
    const runs = [await open(model)];
    if (options.compare) runs.push(await open(options.compare));
    let peak = process.memoryUsage().rss;
    try {
      for (let i = 0; i < options.warmup; i++) for (const r of runs) r.m.predict(inputs);
      for (let i = 0; i < options.runs; i++) {
        throwIfAborted(ctx, 'benchmark');
        for (const r of i % 2 === 0 ? runs : [...runs].reverse()) {
          const t0 = performance.now();
          r.m.predict(inputs); // dataSync inside: the time includes the computation, not just scheduling
          r.samples.push(performance.now() - t0);
        }
        peak = Math.max(peak, process.memoryUsage().rss);
        ctx.progress({ phase: 'benchmark', current: i + 1, total: options.runs });
      }
    } finally {
      for (const r of runs) r.m.dispose();
    }
    // TensorFlow.js has no thread setting here: wasm runs single-threaded in Node.
    const toResult = (r: (typeof runs)[number]): ModelBenchmark => {
      const latencyMs = summarizeLatencies(r.samples);
      return { model: r.ref, latencyMs, throughputPerSec: throughputPerSec(latencyMs), loadTimeMs: r.loadTimeMs, peakRssBytes: Math.max(0, peak - rssBefore), threads: 1 };
    };
    const primary = toResult(runs[0]);
    const compare = runs[1] ? toResult(runs[1]) : undefined;
    return { backend: this.id, runtime: `tfjs ${tf.version.tfjs} (${engine})`, target: engine, primary, compare, speedup: compare ? compare.latencyMs.mean / primary.latencyMs.mean : undefined };
  }

  async verify(reference: ModelRef, candidate: ModelRef, dataset: Dataset, options: VerifyOptions, ctx: RunContext): Promise<VerifyResult> {
    const ref = await loadTfModel(reference.path, reference.format as 'tfjs-layers' | 'tfjs-graph');
    const cand = await loadTfModel(candidate.path, candidate.format as 'tfjs-layers' | 'tfjs-graph');
    const fid = new Map<string, FidelityAccumulator>();
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
          if (!fid.has(o)) fid.set(o, new FidelityAccumulator(o, r[o].length > 1 ? r[o].length : 0, options.topK ?? 5));
          fid.get(o)!.add(r[o], c[co]);
        });
        if (sample.label !== undefined) {
          refAcc.add(r[ref.outputNames[0]], sample.label);
          candAcc.add(c[cand.outputNames[0]], sample.label);
        } else labeled = false;
        ctx.progress({ phase: 'verify', current: ++count, total: Math.min(options.samples, dataset.description.count ?? options.samples) });
      }
    } finally {
      ref.dispose();
      cand.dispose();
    }
    if (count === 0) throw errDatasetEmpty(dataset.description.source);
    const result: VerifyResult = { samples: count, labeled, outputs: [...fid.values()].map((f) => f.result()), thresholds: options.thresholds, passed: true, failures: [] };
    if (labeled) result.accuracy = { reference: refAcc.accuracy, candidate: candAcc.accuracy, dropPoints: (refAcc.accuracy - candAcc.accuracy) * 100 };
    return judgeVerification(result);
  }
}
