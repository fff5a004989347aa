// Weight-compressed TensorFlow.js models for users who stay in TensorFlow.js: kernels stored as
// int8 with one scale per output channel, dequantized to float32 when the model loads. The file
// is a normal model.json whose compressed weights carry
//   "quantization": { "dtype": "int8", "scheme": "qforge-int8-per-axis", "axis": k, "scales": [...] }
// Stock TensorFlow.js refuses that dtype with a clear message; `decodeCompressedWeights` (used by
// qforge's loader, and exported for apps) turns the artifacts back into float32 ones.
import { basename, dirname, join } from 'node:path';
import { quantizePerAxis, writeFileAtomic, type NodeDecision } from '@qforge/core';
import type * as TF from '@tensorflow/tfjs';
import { readModelJson } from './model-json';

export const QFORGE_INT8_SCHEME = 'qforge-int8-per-axis';

/** Smallest kernels worth compressing; biases and BatchNorm vectors stay float32. */
const MIN_ELEMENTS = 256;

interface Int8Quantization {
  dtype: 'int8';
  scheme: typeof QFORGE_INT8_SCHEME;
  axis: number;
  scales: number[];
}

type Spec = Omit<TF.io.WeightsManifestEntry, 'quantization'> & { quantization?: TF.io.WeightsManifestEntry['quantization'] | Int8Quantization };

const isQforgeInt8 = (q: Spec['quantization']): q is Int8Quantization => Boolean(q && (q as Int8Quantization).scheme === QFORGE_INT8_SCHEME);

/** Output channels: the last axis, or the one before it for depthwise kernels [kh, kw, c, 1]. */
function channelAxis(shape: number[]): number {
  return shape[shape.length - 1] === 1 && shape.length > 2 ? shape.length - 2 : shape.length - 1;
}

/** Replaces qforge int8 weights by float32 ones; other entries (and stock quantization) pass through. */
export function decodeCompressedWeights(specs: readonly Spec[], data: ArrayBuffer): { specs: TF.io.WeightsManifestEntry[]; data: ArrayBuffer } {
  if (!specs.some((s) => isQforgeInt8(s.quantization))) return { specs: specs as TF.io.WeightsManifestEntry[], data };
  const parts: Uint8Array[] = [];
  const out: TF.io.WeightsManifestEntry[] = [];
  let offset = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const q = s.quantization;
    if (isQforgeInt8(q)) {
      const values = new Int8Array(data.slice(offset, offset + n));
      offset += n;
      const inner = s.shape.slice(q.axis + 1).reduce((a, b) => a * b, 1);
      const channels = s.shape[q.axis];
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) f[i] = values[i] * q.scales[Math.floor(i / inner) % channels];
      parts.push(new Uint8Array(f.buffer));
      out.push({ name: s.name, shape: s.shape, dtype: 'float32' });
      continue;
    }
    const bytesPer = q ? (q.dtype === 'uint8' ? 1 : 2) : s.dtype === 'bool' ? 1 : 4;
    parts.push(new Uint8Array(data.slice(offset, offset + n * bytesPer)));
    offset += n * bytesPer;
    out.push(s as TF.io.WeightsManifestEntry);
  }
  const total = parts.reduce((a, p) => a + p.byteLength, 0);
  const merged = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    merged.set(p, at);
    at += p.byteLength;
  }
  return { specs: out, data: merged.buffer };
}

export interface CompressionResult {
  sizeBytes: number;
  shard: string;
  decisions: NodeDecision[];
}

/**
 * Writes `output` (a model.json) and `<name>.weights.bin` beside it: kernels int8 per output
 * channel, everything else float32. Source weights are decoded first, whatever their storage.
 */
export async function compressLayersModel(tf: typeof TF, path: string, output: string, artifacts: TF.io.ModelArtifacts): Promise<CompressionResult> {
  const json = readModelJson(path);
  const tensors = tf.io.decodeWeights(artifacts.weightData as ArrayBuffer, artifacts.weightSpecs!);
  const specs: Spec[] = [];
  const parts: Uint8Array[] = [];
  const decisions: NodeDecision[] = [];
  for (const spec of artifacts.weightSpecs!) {
    const t = tensors[spec.name];
    const values = Float32Array.from(t.dataSync() as Float32Array);
    t.dispose();
    if (spec.dtype === 'float32' && spec.shape.length >= 2 && values.length >= MIN_ELEMENTS) {
      const axis = channelAxis(spec.shape);
      const q = quantizePerAxis(values, spec.shape, axis, { type: 'int8', symmetric: true });
      parts.push(new Uint8Array(q.values.buffer, q.values.byteOffset, q.values.byteLength));
      specs.push({ name: spec.name, shape: spec.shape, dtype: 'float32', quantization: { dtype: 'int8', scheme: QFORGE_INT8_SCHEME, axis, scales: Array.from(q.scales) } as Int8Quantization } as Spec);
      decisions.push({ node: spec.name, opType: 'weight', quantized: true, weightType: 'int8', granularity: 'per-channel' });
    } else {
      parts.push(new Uint8Array(values.buffer));
      specs.push({ name: spec.name, shape: spec.shape, dtype: spec.dtype });
      decisions.push({ node: spec.name, opType: 'weight', quantized: false, reason: values.length < MIN_ELEMENTS || spec.shape.length < 2 ? 'small vector (bias, normalization): kept float32' : `dtype ${spec.dtype}` });
    }
  }
  const shard = `${basename(output).replace(/\.json$/, '')}.weights.bin`;
  const data = Buffer.concat(parts);
  const manifest = { ...json, generatedBy: json.generatedBy, convertedBy: 'qforge (int8 per-channel weights)', weightsManifest: [{ paths: [shard], weights: specs }] };
  const text = JSON.stringify(manifest);
  // Shard first: a model.json never points at a missing file.
  await writeFileAtomic(join(dirname(output), shard), data);
  await writeFileAtomic(output, text);
  return { sizeBytes: data.byteLength + Buffer.byteLength(text), shard: join(dirname(output), shard), decisions };
}
