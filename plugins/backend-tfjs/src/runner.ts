// One predict interface over the models this backend runs: TensorFlow.js (fp32) and .tflite
// files in the TFLite interpreter. Values cross it as float32; int8 model inputs and outputs are
// quantized and dequantized with the parameters stored in the file.
import { readFileSync } from 'node:fs';
import { dequantizeTensor, errInvalidOption, quantizeTensor, type ModelRef, type QuantParams, type Tensor } from '@qforge/core';
import { readTflite } from '@qforge/tflite';
import { loadTfModel, type LoadedTfModel } from './engine';
import { loadTfliteInterpreter, type TfliteInterpreter } from './tflite-runtime';

export type ModelRunner = LoadedTfModel;

/** Wraps a TFLite interpreter: float in, float out, whatever the model's edge types are. */
export function tfliteRunner(it: TfliteInterpreter, edges: { inputs: (QuantParams | undefined)[]; outputs: (QuantParams | undefined)[] }): ModelRunner {
  const inputNames = it.inputs.map((i) => i.name);
  const outputNames = it.outputs.map((o) => o.name);
  return {
    inputNames,
    outputNames,
    predict(inputs: Record<string, Tensor>) {
      const values = inputNames.map((n, k) => {
        const t = inputs[n] ?? Object.values(inputs)[k] ?? Object.values(inputs)[0];
        const q = edges.inputs[k];
        if (!q) return t.data as Float32Array;
        return quantizeTensor(t.data as Float32Array, q, { type: it.inputs[k].dataType === 'uint8' ? 'uint8' : 'int8' });
      });
      const outs = it.run(values);
      return Object.fromEntries(
        outs.map((o, k) => {
          const q = edges.outputs[k];
          return [outputNames[k], q ? dequantizeTensor(o, q) : Float32Array.from(o)];
        }),
      );
    },
    dispose: () => it.dispose(),
  };
}

/** Edge parameters of the model's non-float inputs/outputs, read from the file. */
export function tfliteEdges(bytes: Uint8Array): { inputs: (QuantParams | undefined)[]; outputs: (QuantParams | undefined)[] } {
  const m = readTflite(bytes);
  const edge = (i: number): QuantParams | undefined => {
    const t = m.tensors[i];
    return t.type !== 'float32' && t.quantization ? { scale: t.quantization.scale[0], zeroPoint: t.quantization.zeroPoint[0] } : undefined;
  };
  return { inputs: m.inputs.map(edge), outputs: m.outputs.map(edge) };
}

export async function openRunner(ref: ModelRef): Promise<ModelRunner> {
  if (ref.format === 'tflite') {
    const bytes = new Uint8Array(readFileSync(ref.path));
    return tfliteRunner(await loadTfliteInterpreter(bytes, { name: ref.path }), tfliteEdges(bytes));
  }
  if (ref.format !== 'tfjs-layers' && ref.format !== 'tfjs-graph') throw errInvalidOption('model', `${ref.path} is ${ref.format}; this backend runs TensorFlow.js models and .tflite files`);
  return loadTfModel(ref.path, ref.format);
}
