// onnxruntime-node, loaded lazily so a broken install is reported by detect() instead of crashing.
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { errRuntimeFailed, errInputShape, type Tensor } from '@qforge/core';

export type Ort = typeof import('onnxruntime-node');

let cached: { ort?: Ort; error?: Error } | undefined;

export function loadOrt(): Ort {
  if (!cached) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = { ort: require('onnxruntime-node') as Ort };
    } catch (e) {
      cached = { error: e as Error };
    }
  }
  if (cached.error) throw cached.error;
  return cached.ort!;
}

export interface SessionSettings {
  threads?: number;
  /** @defaultValue 'all': graph optimization matters (≈30% on real CNNs) and enables QDQ fusion */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

export async function createSession(model: string | Uint8Array, settings: SessionSettings = {}): Promise<InferenceSession> {
  const ort = loadOrt();
  const options: InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: settings.optimization ?? 'all',
    executionMode: 'sequential',
    intraOpNumThreads: settings.threads ?? 1,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  };
  try {
    return typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  } catch (e) {
    throw errRuntimeFailed('onnxruntime', 'session creation', (e as Error).message, typeof model === 'string' ? { path: model } : {});
  }
}

export function toOrtTensor(t: Tensor): OrtTensor {
  const ort = loadOrt();
  return new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
}

/** Runs one sample; shape errors from the runtime become E_INPUT_SHAPE where they can be told apart. */
export async function runSession(session: InferenceSession, inputs: Record<string, Tensor>, fetches?: string[]): Promise<Record<string, OrtTensor>> {
  const feeds: Record<string, OrtTensor> = {};
  for (const name of session.inputNames) {
    const t = inputs[name];
    if (!t) throw errInputShape(name, [], [], { reason: `the sample has no tensor for input "${name}"` });
    feeds[name] = toOrtTensor(t);
  }
  try {
    return (fetches ? await session.run(feeds, fetches) : await session.run(feeds)) as Record<string, OrtTensor>;
  } catch (e) {
    const msg = (e as Error).message;
    if (/dimension|shape|Got invalid dimensions|rank/i.test(msg)) {
      const first = session.inputNames[0];
      throw Object.assign(errInputShape(first, [], inputs[first]?.dims ?? []), { message: `input does not fit the model: ${msg}` });
    }
    throw errRuntimeFailed('onnxruntime', 'inference', msg);
  }
}
