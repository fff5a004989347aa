// TensorFlow.js engine selection and model loading from disk (no tfjs-node, no fetch).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errModelCorrupt, type Tensor } from '@qforge/core';
import type * as TF from '@tensorflow/tfjs';
import { readModelJson } from './model-json';
import { decodeCompressedWeights } from './weight-compress';

export type TfjsEngine = 'tensorflow' | 'wasm' | 'cpu';

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

let ready: Promise<{ tf: typeof TF; engine: TfjsEngine }> | undefined;

/**
 * Loads TensorFlow.js once and activates the best engine that actually starts: tfjs-node, then
 * the WebAssembly backend (its .wasm files are read from the package folder), then plain JS.
 */
export function loadTf(): Promise<{ tf: typeof TF; engine: TfjsEngine }> {
  ready ??= (async () => {
    if (chooseEngine() === 'tensorflow') {
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const tf = require('@tensorflow/tfjs-node') as typeof TF;
        await tf.ready();
        return { tf, engine: 'tensorflow' as const };
      } catch {
        /* falls back to wasm */
      }
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tf = require('@tensorflow/tfjs') as typeof TF;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const wasm = require('@tensorflow/tfjs-backend-wasm') as { setWasmPaths(p: string): void };
      wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
      if (await tf.setBackend('wasm')) {
        await tf.ready();
        return { tf, engine: 'wasm' as const };
      }
    } catch {
      /* falls back to cpu */
    }
    await tf.setBackend('cpu');
    await tf.ready();
    return { tf, engine: 'cpu' as const };
  })();
  return ready;
}

/** Reads model.json and its weight shards (in manifest order) into tfjs model artifacts. */
export function readArtifacts(path: string): TF.io.ModelArtifacts {
  const json = readModelJson(path);
  const specs: TF.io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of json.weightsManifest!) {
    specs.push(...(group.weights as TF.io.WeightsManifestEntry[]));
    for (const p of group.paths) buffers.push(readFileSync(join(dirname(path), p)));
  }
  const data = Buffer.concat(buffers);
  const needed = specs.reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1) * (w.dtype === 'float32' || w.dtype === 'int32' ? 4 : w.dtype === 'bool' ? 1 : 4), 0);
  if (!specs.some((w) => w.quantization) && data.byteLength < needed) throw errModelCorrupt(path, `weight shards hold ${data.byteLength} bytes, the manifest needs ${needed}`);
  // qforge's int8 per-channel weights are dequantized here, on load.
  const decoded = decodeCompressedWeights(specs, data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return {
    modelTopology: json.modelTopology as TF.io.ModelArtifacts['modelTopology'],
    format: json.format,
    weightSpecs: decoded.specs,
    weightData: decoded.data,
  };
}

export interface LoadedTfModel {
  predict(inputs: Record<string, Tensor>): Record<string, Float32Array>;
  inputNames: string[];
  outputNames: string[];
  dispose(): void;
}

/** Loads a Layers model from disk as a TensorFlow.js LayersModel. */
export async function loadLayersModel(path: string): Promise<TF.LayersModel> {
  const { tf } = await loadTf();
  const artifacts = readArtifacts(path);
  try {
    return await tf.loadLayersModel({ load: async () => artifacts });
  } catch (e) {
    throw errModelCorrupt(path, `TensorFlow.js cannot build the model: ${(e as Error).message}`);
  }
}

/** Loads a Layers or Graph model from disk and wraps it in a name-based predict. */
export async function loadTfModel(path: string, format: 'tfjs-layers' | 'tfjs-graph'): Promise<LoadedTfModel> {
  const { tf } = await loadTf();
  const artifacts = readArtifacts(path);
  const handler: TF.io.IOHandler = { load: async () => artifacts };
  // Both model kinds: symbolic tensors name the inputs/outputs (Sequential leaves inputNames unset);
  // each input is fed by name, or the sample's only tensor when names differ.
  const wrap = (m: TF.GraphModel | TF.LayersModel, run: (xs: TF.Tensor[], names: string[]) => TF.Tensor | TF.Tensor[]): LoadedTfModel => {
    const inputNames = m.inputs.map((i) => i.name);
    const outputNames = m.outputs.map((o) => o.name);
    return {
      inputNames,
      outputNames,
      predict: (inputs) =>
        tf.tidy(() => {
          const xs = inputNames.map((n) => {
            const t = inputs[n] ?? Object.values(inputs)[0];
            return tf.tensor(t.data as Float32Array, t.dims);
          });
          const out = run(xs, inputNames);
          return Object.fromEntries((Array.isArray(out) ? out : [out]).map((t, k) => [outputNames[k], t.dataSync() as Float32Array]));
        }),
      dispose: () => m.dispose(),
    };
  };
  try {
    if (format === 'tfjs-graph') {
      const g = await tf.loadGraphModel(handler);
      return wrap(g, (xs, names) => g.execute(Object.fromEntries(names.map((n, k) => [n, xs[k]])), g.outputs.map((o) => o.name)));
    }
    const l = await tf.loadLayersModel(handler);
    return wrap(l, (xs) => l.predict(xs.length === 1 ? xs[0] : xs));
  } catch (e) {
    if ((e as { code?: string }).code) throw e;
    throw errModelCorrupt(path, `TensorFlow.js cannot build the model: ${(e as Error).message}`);
  }
}
