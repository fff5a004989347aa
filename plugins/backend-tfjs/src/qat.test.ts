// Quantization-aware training: the fake-quantized twin is the .tflite file, and training runs, reports and stops.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, openDataset, quantizeOptionsFor, resolveTargetProfile, type ProgressEvent, type QuantizeOptions } from '@qforge/core';
import { readTflite, writeTflite } from '@qforge/tflite';
import { TfjsBackend } from './backend';
import { loadLayersModel, loadTf } from './engine';
import type { IrGraph } from './ir';
import { lowerLayersModel } from './keras-lower';
import { FakeQuantTwin, logitsTensor } from './qat';
import { tfliteEdges, tfliteRunner } from './runner';
import { activationParams, convertToTflite } from './tflite-convert';
import { loadTfliteInterpreter } from './tflite-runtime';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'mnist', 'tfjs', 'model.json');
const model = { path: EXAMPLE, format: 'tfjs-layers' as const };
const target = resolveTargetProfile('tflite-int8');
const backend = new TfjsBackend();
const work = mkdtempSync(join(tmpdir(), 'qforge-qat-'));
const mnistInputs = [{ name: 'x', dtype: 'float32', shape: [1, 28, 28, 1] }];
const qat = { epochs: 1, learningRate: 1e-4, batchSize: 32 };

async function mnistTable() {
  return backend.calibrate(model, openDataset('mnist:calib', { inputs: mnistInputs }), { method: 'minmax', samples: 64, target }, createRunContext());
}

/** Largest |twin − .tflite| on the logits over `samples` test digits, in units of the logits' scale. */
async function twinAgainstFile(graph: IrGraph, twinGraph: IrGraph, ranges: Map<string, [number, number]>, samples: number): Promise<number> {
  const { tf } = await loadTf();
  const logits = logitsTensor(graph);
  const conversion = convertToTflite(graph, ranges, { ioType: 'float32', perChannel: true });
  const m = conversion.model;
  const extra = m.tensors.findIndex((t) => t.name === logits);
  const bytes = writeTflite({ ...m, outputs: [...m.outputs, extra] });
  const runner = tfliteRunner(await loadTfliteInterpreter(bytes, { name: 'twin-check.tflite' }), tfliteEdges(bytes));
  const twin = new FakeQuantTwin(tf, twinGraph, ranges, true);
  const step = activationParams(graph, ranges).params.get(logits)!.scale;
  let worst = 0;
  try {
    for await (const s of openDataset('mnist:test', { inputs: mnistInputs }).samples({ limit: samples })) {
      const file = runner.predict(s.inputs)[runner.outputNames[1]];
      const x = s.inputs.x;
      const mine = tf.tidy(() => twin.forward(tf.tensor(x.data as Float32Array, x.dims)).get(logits)!.dataSync() as Float32Array);
      for (let i = 0; i < file.length; i++) worst = Math.max(worst, Math.abs(file[i] - mine[i]) / step);
    }
  } finally {
    twin.dispose();
    runner.dispose();
  }
  return worst;
}

describe('quantization-aware training (TensorFlow.js → int8 .tflite)', () => {
  beforeAll(async () => {
    await loadTf();
  });

  it('the fake-quantized forward equals the TFLite interpreter on the same weights within one quantization step', async () => {
    const table = await mnistTable();
    const layers = await loadLayersModel(EXAMPLE);
    const graph = lowerLayersModel(layers);
    layers.dispose();
    const ranges = new Map([...graph.shapes.keys()].map((id) => [id, table.tensors[id].range] as [string, [number, number]]));
    expect(await twinAgainstFile(graph, graph, ranges, 24)).toBeLessThanOrEqual(1);
    // Negative twin: one first-layer weight moved by 0.5 shows up as many steps.
    const conv = graph.ops.find((op) => op.kind === 'conv2d')!;
    if (conv.kind !== 'conv2d') throw new Error('no conv');
    const kernel = Float32Array.from(conv.kernel);
    kernel[0] += 0.5;
    const perturbed = { ...graph, ops: graph.ops.map((op) => (op === conv ? { ...conv, kernel } : op)) };
    expect(await twinAgainstFile(graph, perturbed, ranges, 24)).toBeGreaterThan(1);
  });

  it('fine-tunes on labeled digits, reports engine, loss and time per batch, and writes a .tflite the interpreter runs', async () => {
    const table = await mnistTable();
    const events: ProgressEvent[] = [];
    const ctx = createRunContext({ progress: (e) => events.push(e) });
    const out = join(work, 'qat.tflite');
    const options: QuantizeOptions = quantizeOptionsFor(target, { output: out, qat, correctionData: openDataset('mnist:0-96', { inputs: mnistInputs }) });
    const q = await backend.quantize(model, table, options, ctx);
    const change = q.preparation.find((c) => c.kind === 'quantization-aware-training');
    expect(change?.detail).toMatch(/1 epoch\(s\), 3 steps of 32 \(96 samples of mnist:0-96 per epoch.* on the (cpu|tfjs-node) engine in [\d.]+ s: loss/);
    const batches = events.filter((e) => e.message?.startsWith('QAT'));
    expect(batches).toHaveLength(3);
    expect(batches[2]).toMatchObject({ current: 3, total: 3, message: expect.stringMatching(/loss \d+\.\d{4}, batch accuracy [\d.]+%/) });
    expect(readTflite(new Uint8Array(readFileSync(out))).operators.map((o) => o.op)).toContain('FULLY_CONNECTED');
    // Trained weights differ from the plain conversion's.
    const ptq = await backend.quantize(model, table, quantizeOptionsFor(target, { output: join(work, 'ptq.tflite') }), createRunContext());
    const weights = (p: string) => Buffer.concat(readTflite(new Uint8Array(readFileSync(p))).tensors.filter((t) => t.name.endsWith('/weights')).map((t) => Buffer.from(t.data!)));
    expect(weights(out).equals(weights(ptq.model.path))).toBe(false);
  });

  it('refuses unlabeled training data, and stops on abort without writing', async () => {
    const table = await mnistTable();
    const unlabeled = join(work, 'unlabeled.tflite');
    await expect(backend.quantize(model, table, quantizeOptionsFor(target, { output: unlabeled, qat, correctionData: openDataset('random:1', { inputs: mnistInputs }) }), createRunContext())).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
    expect(existsSync(unlabeled)).toBe(false);
    const abort = new AbortController();
    const out = join(work, 'aborted.tflite');
    const ctx = createRunContext({ signal: abort.signal, progress: (e) => e.message?.startsWith('QAT') && abort.abort() });
    // Different settings than the other test, so no earlier training is reused.
    await expect(backend.quantize(model, table, quantizeOptionsFor(target, { output: out, qat: { ...qat, batchSize: 16 }, correctionData: openDataset('mnist:0-64', { inputs: mnistInputs }) }), ctx)).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(existsSync(out)).toBe(false);
  });
});
