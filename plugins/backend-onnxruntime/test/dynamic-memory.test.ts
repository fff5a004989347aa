// Dynamic mode on large models: float weights released as they are replaced (shared ones kept), one encoding checked from disk.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32, resolveTargetProfile, type QuantizeOptions } from '@qforge/core';
import { DataType, makeNode, makeTensor, makeValueInfo, type ModelProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { quantizeDynamic } from '../src/quantize-dynamic';
import { writeCheckedModel } from '../src/write-model';

const target = resolveTargetProfile('x86-avx2');
const opts = (over: Partial<QuantizeOptions> = {}): QuantizeOptions => ({
  output: '',
  target,
  mode: 'dynamic',
  format: 'qdq',
  perChannel: true,
  activationType: 'uint8',
  weightType: 'int8',
  reduceRange: true,
  symmetricWeights: true,
  excludeNodes: [],
  opTypes: [],
  ...over,
});
const weight = (seed: number, k: number, n: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: k * n }, () => r() - 0.5);
};

/** x → MatMul(w_own) → MatMul(w_tied) → y, and Gather(w_tied, ids) → emb: w_tied is read twice (a tied embedding). */
function tiedModel(): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'tied',
      node: [makeNode('MatMul', ['x', 'w_own'], ['h'], 'mm_own'), makeNode('MatMul', ['h', 'w_tied'], ['y'], 'mm_tied'), makeNode('Gather', ['w_tied', 'ids'], ['emb'], 'embed')],
      initializer: [makeTensor('w_own', [16, 16], weight(1, 16, 16)), makeTensor('w_tied', [16, 16], weight(2, 16, 16))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 16]), makeValueInfo('ids', DataType.INT64, [1, 2])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 16]), makeValueInfo('emb', DataType.FLOAT, [1, 2, 16])],
      valueInfo: [],
    },
  };
}

describe('quantizeDynamic memory', () => {
  it('releases each float weight once replaced, keeps one another node still reads, and the model still runs', async () => {
    const proto = tiedModel();
    const own = proto.graph.initializer[0];
    const tied = proto.graph.initializer[1];
    // Gather left out (--op-types MatMul): it then still reads the tied weight in float.
    const { decisions, changes } = quantizeDynamic(proto, opts({ opTypes: ['MatMul'] }));
    expect(decisions.filter((d) => d.quantized).map((d) => d.node)).toEqual(['mm_own', 'mm_tied']);
    expect(own.rawData?.byteLength ?? 0).toBe(0);
    expect(proto.graph.initializer.map((t) => t.name)).not.toContain('w_own');
    // The Gather still reads the tied weight: it keeps its float data.
    expect(tied.rawData?.byteLength).toBe(16 * 16 * 4);
    expect(proto.graph.initializer.map((t) => t.name)).toContain('w_tied');
    expect(changes[0].detail).toMatch(/1 float weight\(s\) released/);
    const dir = mkdtempSync(join(tmpdir(), 'qforge-dynmem-'));
    const out = join(dir, 'tied.int8.onnx');
    await writeCheckedModel(proto, out);
    const s = await ort.InferenceSession.create(out);
    const r = await s.run({ x: new ort.Tensor('float32', new Float32Array(16).fill(0.5), [1, 16]), ids: new ort.Tensor('int64', BigInt64Array.from([0n, 3n]), [1, 2]) });
    expect(Array.from((r.emb.data as Float32Array).slice(16, 32))).toEqual(Array.from(weight(2, 16, 16).slice(48, 64)));
    await s.release();
  });

  it('writes only the checked file (no temporary left), and nothing when the runtime refuses the model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-dynmem-'));
    const proto = tiedModel();
    quantizeDynamic(proto, opts());
    const written = await writeCheckedModel(proto, join(dir, 'ok.onnx'));
    expect(readdirSync(dir)).toEqual(['ok.onnx']);
    expect(written.sizeBytes).toBeGreaterThan(0);
    const broken = tiedModel();
    broken.graph.node.push(makeNode('NoSuchOp', ['y'], ['z'], 'bad'));
    broken.graph.output.push(makeValueInfo('z', DataType.FLOAT, [1, 16]));
    await expect(writeCheckedModel(broken, join(dir, 'bad.onnx'))).rejects.toThrow();
    expect(existsSync(join(dir, 'bad.onnx'))).toBe(false);
    expect(readdirSync(dir)).toEqual(['ok.onnx']);
  });
});
