import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, QuantizeOptions, VerifyResult } from './contract';
import { createRunContext } from './context';
import { decideCorrections, type Correction } from './corrections';

/** A backend whose "model" is the switch settings, and whose verify reads SNR and accuracy off a table. */
function fakeBackend(scores: Record<string, { snr: number; drop?: number }>) {
  const calls = { quantize: 0, verify: 0 };
  const key = (o: QuantizeOptions) => `bc=${o.biasCorrection ? 1 : 0},eq=${o.equalize ? 1 : 0}`;
  const backend = {
    quantize: async (_m: unknown, _t: unknown, o: QuantizeOptions) => {
      calls.quantize++;
      writeFileSync(o.output, key(o));
      return { model: { path: o.output, format: 'onnx' }, sizeBytes: 1, preparation: [], decisions: [] };
    },
    verify: async (_r: unknown, c: { path: string }): Promise<VerifyResult> => {
      calls.verify++;
      const s = scores[readFileSync(c.path, 'utf8')];
      return { samples: 10, labeled: s.drop !== undefined, outputs: [{ output: 'y', snrDb: s.snr, cosine: 1, maxAbsError: 0, meanAbsError: 0 }], ...(s.drop !== undefined ? { accuracy: { reference: 0.99, candidate: 0.99 - s.drop / 100, dropPoints: s.drop } } : {}), thresholds: {}, passed: true, failures: [] };
    },
  } as unknown as Backend;
  return { backend, calls };
}

const BIAS: Correction = { name: 'bias-correction', off: async (r) => ({ table: r.table, options: { ...r.options, biasCorrection: false } }) };
const EQ: Correction = { name: 'equalization', off: async (r) => ({ table: r.table, options: { ...r.options, equalize: false } }) };

async function decide(scores: Record<string, { snr: number; drop?: number }>, on: { bc: boolean; eq: boolean }, corrections: Correction[]) {
  const dir = mkdtempSync(join(tmpdir(), 'qforge-corr-'));
  const { backend, calls } = fakeBackend(scores);
  const options = { output: join(dir, 'model.int8.onnx'), biasCorrection: on.bc, equalize: on.eq } as QuantizeOptions;
  const quantized = await backend.quantize({ path: 'm.onnx', format: 'onnx' }, undefined, options, createRunContext());
  const verify = await backend.verify({ path: 'm.onnx', format: 'onnx' }, quantized.model, undefined as never, { samples: 10, thresholds: {} }, createRunContext());
  const d = await decideCorrections(backend, { path: 'm.onnx', format: 'onnx' }, { recipe: { options }, quantized, verify }, corrections, { dataset: undefined as never, options: { samples: 10, thresholds: {} }, workDir: dir }, createRunContext());
  return { d, calls, written: readFileSync(options.output, 'utf8') };
}

describe('decideCorrections', () => {
  it('writes the model without an equalization that made SNR worse, and says so plainly', async () => {
    const { d, written } = await decide({ 'bc=0,eq=1': { snr: 42.8 }, 'bc=0,eq=0': { snr: 44.37 } }, { bc: false, eq: true }, [EQ]);
    expect(d.dropped).toEqual(['equalization']);
    expect(written).toBe('bc=0,eq=0');
    expect(d.verify.outputs[0].snrDb).toBe(44.37);
    expect(d.recipe.options.equalize).toBe(false);
    expect(d.records).toEqual([expect.objectContaining({ name: 'equalization', without: 44.37, with: 42.8, helped: false, decisive: true, applied: false })]);
    expect(d.notes).toEqual(['equalization left out: it made the result worse (SNR 44.37 dB without it, 42.80 dB with it); the model is written without it']);
  });

  it('keeps a correction asked for by name (--qat) even when it measures worse, and says so', async () => {
    const asked: Correction = { ...EQ, always: true };
    const { d, calls, written } = await decide({ 'bc=0,eq=1': { snr: 42.8 }, 'bc=0,eq=0': { snr: 44.37 } }, { bc: false, eq: true }, [asked]);
    expect(d.dropped).toEqual([]);
    expect(written).toBe('bc=0,eq=1');
    expect(d.records).toEqual([expect.objectContaining({ name: 'equalization', without: 44.37, with: 42.8, helped: false, applied: true })]);
    expect(d.notes).toEqual(['equalization kept as asked although the result is worse with it (SNR 44.37 dB without it, 42.80 dB with it)']);
    expect(calls.quantize).toBe(2);
  });

  it('keeps a correction that helps, without quantizing again', async () => {
    const { d, calls, written } = await decide({ 'bc=1,eq=0': { snr: 44.4 }, 'bc=0,eq=0': { snr: 43.1 } }, { bc: true, eq: false }, [BIAS]);
    expect(d.dropped).toEqual([]);
    expect(d.notes).toEqual([]);
    expect(written).toBe('bc=1,eq=0');
    expect(d.records[0]).toMatchObject({ helped: true, applied: true });
    expect(calls.quantize).toBe(2); // the run itself and the comparison without the correction
  });

  it('judges by accuracy when labeled; a tie in accuracy is decided by SNR, and no effect means left out', async () => {
    const tie = await decide({ 'bc=1,eq=0': { snr: 30.01, drop: 0 }, 'bc=0,eq=0': { snr: 30.0, drop: 0 } }, { bc: true, eq: false }, [BIAS]);
    expect(tie.d.dropped).toEqual(['bias-correction']);
    expect(tie.d.records.map((r) => [r.metric, r.decisive])).toEqual([['top-1 accuracy drop (points)', false], [expect.stringMatching(/^SNR/), true]]);
    expect(tie.d.notes[0]).toMatch(/^bias correction left out: it made no measurable difference/);
    // Lower accuracy drop with the correction wins even when SNR says otherwise.
    const acc = await decide({ 'bc=1,eq=0': { snr: 29, drop: 0.2 }, 'bc=0,eq=0': { snr: 30, drop: 1.0 } }, { bc: true, eq: false }, [BIAS]);
    expect(acc.d.dropped).toEqual([]);
    expect(acc.d.records[0]).toMatchObject({ metric: 'top-1 accuracy drop (points)', better: 'lower', without: 1.0, with: 0.2, helped: true, decisive: true });
  });

  it('drops two unhelpful corrections together and verifies the model actually written', async () => {
    const scores = { 'bc=1,eq=1': { snr: 40 }, 'bc=0,eq=1': { snr: 41 }, 'bc=1,eq=0': { snr: 41 }, 'bc=0,eq=0': { snr: 41.5 } };
    const { d, calls, written } = await decide(scores, { bc: true, eq: true }, [BIAS, EQ]);
    expect(d.dropped).toEqual(['bias-correction', 'equalization']);
    expect(written).toBe('bc=0,eq=0');
    expect(d.verify.outputs[0].snrDb).toBe(41.5);
    expect(calls.verify).toBe(4);
  });
});
