// Storage-only int8: the file holds int8 weights, ONNX Runtime's optimized graph is the fp32 graph.
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, mulberry32, resolveTargetProfile, type QuantizeOptions } from '@qforge/core';
import { DataType, loadModel, saveModel, type ModelProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { OnnxRuntimeBackend } from '../src/backend';
import { messyCnn } from './fixtures';

const dir = mkdtempSync(join(tmpdir(), 'qforge-storage-'));
const target = resolveTargetProfile('x86-avx2');
const backend = new OnnxRuntimeBackend();

function storageOptions(output: string): QuantizeOptions {
  const d = target.defaults;
  return { output, target, mode: 'static', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [], storageOnly: true };
}

/** Op counts of ONNX Runtime's optimized graph (level all, as every qforge session runs). */
async function optimizedOps(path: string): Promise<Record<string, number>> {
  const out = `${path}.optimized.onnx`;
  const s = await ort.InferenceSession.create(path, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', optimizedModelFilePath: out, logSeverityLevel: 3 });
  await s.release();
  const counts: Record<string, number> = {};
  for (const n of loadModel(out).proto.graph.node) counts[n.opType] = (counts[n.opType] ?? 0) + 1;
  return counts;
}

async function outputs(path: string, x: Float32Array): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path);
  const r = await s.run({ x: new ort.Tensor('float32', x, [1, 3, 16, 16]) });
  return r[s.outputNames[0]].data as Float32Array;
}

describe('storage-only int8 (quantize with storageOnly)', () => {
  const fp32 = join(dir, 'messy.onnx');
  const stored = join(dir, 'messy.storage.onnx');
  const x = Float32Array.from({ length: 3 * 16 * 16 }, mulberry32(3));
  beforeAll(async () => {
    await saveModel(messyCnn() as ModelProto, fp32);
    await backend.quantize({ path: fp32, format: 'onnx' }, undefined, storageOptions(stored), createRunContext());
  });

  it('stores every weight as int8 behind Cast+Mul, without calibration', () => {
    const p = loadModel(stored).proto;
    const weights = p.graph.node.filter((n) => ['Conv', 'Gemm'].includes(n.opType)).map((n) => p.graph.initializer.find((t) => t.name === n.input[1]));
    // Weights are computed (Mul outputs), not float initializers.
    expect(weights.every((w) => w === undefined)).toBe(true);
    expect(p.graph.initializer.filter((t) => t.dataType === DataType.INT8)).toHaveLength(3);
    expect(p.graph.node.some((n) => n.opType === 'DequantizeLinear')).toBe(false);
    expect(statSync(stored).size).toBeLessThan(statSync(fp32).size);
  });

  it('runs as the fp32 graph: ONNX Runtime folds the dequantization at load', async () => {
    expect(await optimizedOps(stored)).toEqual(await optimizedOps(fp32));
  });

  it('gives the fp32 outputs up to weight rounding', async () => {
    const [a, b] = [await outputs(fp32, x), await outputs(stored, x)];
    let err = 0;
    let sig = 0;
    a.forEach((v, i) => ((err += (v - b[i]) ** 2), (sig += v * v)));
    expect(10 * Math.log10(sig / err)).toBeGreaterThan(30);
  });

  it('a DequantizeLinear on the same int8 weights is not folded: it would run at every inference (negative twin)', async () => {
    // The int8 model of the default static path keeps DQ nodes in its optimized graph.
    const p = loadModel(stored).proto;
    const mul = p.graph.node.find((n) => n.opType === 'Mul' && n.output[0].endsWith('_dequantized'))!;
    const cast = p.graph.node.find((n) => n.output[0] === mul.input[0])!;
    const scale = p.graph.initializer.find((t) => t.name === mul.input[1])!;
    p.graph.initializer.push({ ...scale, name: 'zp', dims: scale.dims, dataType: DataType.INT8, rawData: new Uint8Array(scale.dims.reduce((a, b) => a * Number(b), 1)), floatData: [] } as never);
    p.graph.initializer.push({ ...scale, name: 'flat_scale', dims: [scale.dims.reduce((a, b) => a * Number(b), 1)] } as never);
    Object.assign(mul, { opType: 'DequantizeLinear', input: [cast.input[0], 'flat_scale', 'zp'], attribute: [{ name: 'axis', type: 2, i: 0 }] });
    p.graph.node = p.graph.node.filter((n) => n !== cast);
    p.opsetImport = [{ domain: '', version: 13 }];
    const dq = join(dir, 'messy.dq.onnx');
    await saveModel(p, dq);
    expect((await optimizedOps(dq)).DequantizeLinear).toBeGreaterThan(0);
  });
});
