// The real TFLite interpreter (TensorFlow Lite compiled to WebAssembly, from @tensorflow/tfjs-tflite)
// running in Node. Its loader is written for browsers and workers, so a narrow shim stands in for
// what it expects: `self`, `location`, `importScripts` (which evaluates the Emscripten glue with a
// `fetch` that reads the .wasm from disk) and the single-threaded SIMD build, because Node has no
// Web Workers for the threaded one.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errInputShape, errModelCorrupt, errRuntimeFailed } from '@qforge/core';

export type TfliteTypedArray = Int8Array | Uint8Array | Int16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

export interface TfliteTensorMeta {
  name: string;
  dataType: string;
  shape: number[];
}

export interface TfliteInterpreter {
  readonly inputs: TfliteTensorMeta[];
  readonly outputs: TfliteTensorMeta[];
  /** Copies `inputs` (one per model input, in order) in, runs the graph, returns copies of the outputs. */
  run(inputs: ArrayLike<number>[]): TfliteTypedArray[];
  /** Per-operator times of the last runs when created with `profile`. */
  profile(): { nodeType: string; nodeName: string; nodeExecMs: number }[];
  dispose(): void;
}

interface WebTensorInfo {
  name: string;
  dataType: string;
  shape: string;
  data(): TfliteTypedArray;
}
interface WebModelRunner {
  getInputs(): WebTensorInfo[];
  getOutputs(): WebTensorInfo[];
  infer(): boolean;
  getProfilingResults(): { nodeType: string; nodeName: string; nodeExecMs: number }[];
  cleanUp(): void;
}
interface TfliteModule {
  setWasmPath(path: string): void;
  loadTFLiteModel(model: ArrayBuffer, options: { numThreads?: number; enableProfiling?: boolean }): Promise<{ modelRunner: WebModelRunner }>;
}

let loaded: TfliteModule | undefined;
const runtimeLog: string[] = [];
const remember = (line: string) => {
  runtimeLog.push(String(line));
  if (runtimeLog.length > 20) runtimeLog.shift();
};

function wasmDir(): string {
  return join(dirname(require.resolve('@tensorflow/tfjs-tflite/package.json')), 'wasm') + '/';
}

function loadModule(): TfliteModule {
  if (loaded) return loaded;
  const dir = wasmDir();
  const g = globalThis as Record<string, unknown>;
  g.self ??= globalThis;
  g.location ??= { origin: '', href: dir, protocol: 'file:' };
  const readFetch = async (url: string | URL) => new Response(readFileSync(String(url).replace(/^file:\/\//, '')), { headers: { 'content-type': 'application/wasm' } });
  g.importScripts ??= (url: string) => {
    // The loader asks for the threaded build when the engine supports threads; Node cannot start
    // its workers, so the matching single-threaded build is loaded instead.
    const file = String(url).replace(/^file:\/\//, '').replace(/_threaded\.js$/, '.js');
    if (!file.startsWith(dir)) throw new Error(`refusing to load ${file}: not part of @tensorflow/tfjs-tflite`);
    const source = readFileSync(file, 'utf8');
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    const factory = new Function('require', '__filename', '__dirname', 'fetch', `${source}\nreturn tflite_web_api_ModuleFactory;`);
    const create = factory(require, file, dirname(file), readFetch) as (opts: Record<string, unknown>) => Promise<unknown>;
    // The runtime's log lines are kept for error messages instead of going to stderr.
    g.tflite_web_api_ModuleFactory = (opts: Record<string, unknown>) => create({ ...opts, print: remember, printErr: remember });
  };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require('@tensorflow/tfjs-tflite') as TfliteModule;
  mod.setWasmPath(dir);
  loaded = mod;
  return mod;
}

/** Version of the TFLite WebAssembly runtime package. */
export function tfliteRuntimeVersion(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('@tensorflow/tfjs-tflite/package.json') as { version: string }).version;
  } catch {
    return undefined;
  }
}

const meta = (t: WebTensorInfo): TfliteTensorMeta => ({ name: t.name, dataType: t.dataType, shape: t.shape.split(',').filter((s) => s !== '').map(Number) });

/**
 * Loads .tflite bytes into the TFLite interpreter. An invalid model fails with E_MODEL_CORRUPT and
 * the interpreter's own message.
 */
export async function loadTfliteInterpreter(bytes: Uint8Array, options: { profile?: boolean; name?: string } = {}): Promise<TfliteInterpreter> {
  const mod = loadModule();
  let runner: WebModelRunner;
  runtimeLog.length = 0;
  try {
    const copy = bytes.slice().buffer;
    runner = (await mod.loadTFLiteModel(copy, { numThreads: 1, enableProfiling: options.profile ?? false })).modelRunner;
  } catch (e) {
    const log = runtimeLog.filter((l) => !l.startsWith('INFO:')).join('; ');
    throw errModelCorrupt(options.name ?? '<tflite bytes>', `the TFLite interpreter refused it: ${(e as Error).message ?? e}${log ? ` (${log})` : ''}`);
  }
  const inputs = runner.getInputs();
  const outputs = runner.getOutputs();
  return {
    inputs: inputs.map(meta),
    outputs: outputs.map(meta),
    run(values) {
      if (values.length !== inputs.length) throw new Error(`the model has ${inputs.length} input(s), got ${values.length}`);
      inputs.forEach((info, k) => {
        const view = info.data();
        if (values[k].length !== view.length) throw errInputShape(info.name, meta(info).shape, [values[k].length]);
        view.set(values[k] as ArrayLike<number> & Float32Array);
      });
      if (!runner.infer()) throw errRuntimeFailed('tfjs', 'tflite-infer', 'the TFLite interpreter reported a failure', { path: options.name });
      return outputs.map((o) => o.data().slice());
    },
    profile: () => runner.getProfilingResults(),
    dispose: () => runner.cleanUp(),
  };
}
