// The TensorFlow.js backend: reads Layers and Graph models from disk and picks the fastest engine here.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  defineCapabilities,
  errModelCorrupt,
  errUnsupported,
  sha256File,
  type Backend,
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

// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE = require('../package.json') as { name: string; version: string };

export type TfjsEngine = 'tensorflow' | 'wasm' | 'cpu';

export const TFJS_CAPABILITIES: BackendCapabilities = defineCapabilities({
  inputFormats: ['tfjs-layers', 'tfjs-graph'],
  outputFormats: ['tflite'],
  verbs: ['inspect'],
  targets: ['tflite-int8'],
  notes: [
    'inspects TensorFlow.js Layers and Graph models from disk (no tfjs-node needed)',
    'engine: tfjs-node when installed, else WebAssembly (SIMD), else pure JavaScript',
    'int8 .tflite conversion, calibration, verification and benchmarking are not implemented in this release: they fail with E_UNSUPPORTED',
  ],
});

function resolvable(id: string): boolean {
  try {
    require.resolve(id);
    return true;
  } catch {
    return false;
  }
}

/** The engine qforge would run TensorFlow.js on here, best first. */
export function chooseEngine(canLoad: (id: string) => boolean = resolvable): TfjsEngine {
  if (canLoad('@tensorflow/tfjs-node')) return 'tensorflow';
  if (canLoad('@tensorflow/tfjs-backend-wasm')) return 'wasm';
  return 'cpu';
}

interface LayersJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology?: {
    class_name?: string;
    config?: { layers?: { class_name: string; config: { name: string; batch_input_shape?: (number | null)[]; dtype?: string } }[] } | { class_name: string }[];
    model_config?: { class_name?: string; config?: { layers?: { class_name: string; config: { name: string; batch_input_shape?: (number | null)[] } }[] } };
    node?: { op: string; name: string }[];
  };
  weightsManifest?: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
}

export function readModelJson(path: string): LayersJson {
  let json: LayersJson;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw errModelCorrupt(path, `model.json is not valid JSON (${(e as Error).message})`);
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) throw errModelCorrupt(path, 'model.json lacks modelTopology or weightsManifest');
  for (const group of json.weightsManifest) {
    for (const p of group.paths) {
      if (p.includes('..') || p.startsWith('/')) throw errModelCorrupt(path, `weight shard path "${p}" escapes the model's folder`);
      if (!existsSync(join(dirname(path), p))) throw errModelCorrupt(path, `weight shard "${p}" is missing`);
    }
  }
  return json;
}

export class TfjsBackend implements Backend {
  readonly id = 'tfjs';
  readonly displayName = 'TensorFlow.js (TFLite int8)';
  readonly packageName = PACKAGE.name;
  readonly version = PACKAGE.version;
  readonly capabilities = TFJS_CAPABILITIES;

  async detect(): Promise<Detection> {
    if (!resolvable('@tensorflow/tfjs')) return { available: false, reason: '@tensorflow/tfjs is not installed', hint: 'npm i @tensorflow/tfjs @tensorflow/tfjs-backend-wasm' };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const version = (require('@tensorflow/tfjs/package.json') as { version: string }).version;
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
  async benchmark(): Promise<BenchmarkResult> {
    return this.unsupported('benchmark');
  }
  async verify(): Promise<VerifyResult> {
    return this.unsupported('verify');
  }
}
