// --preset transformers.js: the variants under transformers.js's file names, each loaded and verified on token data.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OnnxRuntimeBackend } from '@qforge/backend-onnxruntime';
import { createRunContext, modelRef, resolveTargetProfile, runQuantize } from '@qforge/core';
import { decodeModel } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { formatPresetTable, runTransformersPreset } from '../src/lib/transformers-preset';
import { REPO, qforge } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qforge-preset-'));
const repoDir = join(dir, 'byte-lm');
const model = join(repoDir, 'onnx', 'model.onnx');
const tokens = join(dir, 'tokens');

beforeAll(() => {
  mkdirSync(join(repoDir, 'onnx'), { recursive: true });
  execFileSync(process.execPath, [join(REPO, 'tools/build-transformer-fixture.js'), model, '--tokens']);
  // A fixed text (not the repo's docs, which change) keeps the tokens, and so the measured perplexities, the same run to run.
  execFileSync(process.execPath, [join(REPO, 'tools/make-token-data.js'), tokens, '4', '8', join(REPO, 'node_modules/typescript/LICENSE.txt')]);
}, 60_000);

const common = ['--data', join(tokens, 'calib'), '--eval-data', join(tokens, 'eval.npz'), '--eval-samples', '8', '--runs-dir', join(dir, 'runs')];

describe('quantize --preset transformers.js', () => {
  it('writes fp16, q8 (= int8) and q4 under the names transformers.js loads, each verified by perplexity', async () => {
    const out = join(dir, 'out');
    const r = qforge(['quantize', repoDir, '--preset', 'transformers.js', ...common, '--benchmark-runs', '5', '-o', out, '--json']);
    expect(r.code).toBe(0);
    const j = r.json();
    expect(j.passed).toBe(true);
    expect(readdirSync(out).sort()).toEqual(['model_fp16.onnx', 'model_int8.onnx', 'model_q4.onnx', 'model_quantized.onnx']);
    const byDtype = Object.fromEntries(j.variants.map((v: { dtype: string }) => [v.dtype, v]));
    for (const dtype of ['fp16', 'q8', 'q4']) {
      expect(byDtype[dtype]).toMatchObject({ verdict: 'pass' });
      expect(byDtype[dtype].fidelity[0]).toMatch(/^logits: perplexity .* next-token agreement/);
      expect(byDtype[dtype].sizeRatio).toBeLessThan(0.6);
      expect(byDtype[dtype].latencyMsP50).toBeGreaterThan(0);
    }
    expect(byDtype.int8.sameAs).toBe('model_quantized.onnx');
    for (const dtype of ['uint8', 'q4f16', 'bnb4']) expect(byDtype[dtype].skipped).toBeTruthy();
    // Each file is a model ONNX Runtime runs on token inputs.
    for (const f of readdirSync(out)) {
      const s = await ort.InferenceSession.create(join(out, f));
      const ids = new ort.Tensor('int64', BigInt64Array.from([72n, 105n, 33n]), [1, 3]);
      const y = await s.run({ input_ids: ids, attention_mask: new ort.Tensor('int64', new BigInt64Array(3).fill(1n), [1, 3]) });
      expect(y.logits.dims).toEqual([1, 3, 256]);
      await s.release();
    }
  }, 240_000);

  it('fails (exit 1) when a variant misses the perplexity limit, and says which', () => {
    const out = join(dir, 'strict');
    const r = qforge(['quantize', model, '--preset', 'transformers.js', ...common, '--no-benchmark', '--max-ppl-increase', '0', '-o', out, '--json']);
    expect(r.code).toBe(1);
    const j = r.json();
    expect(j.passed).toBe(false);
    // With a limit of 0% each verdict follows the sign of that variant's measured perplexity change.
    const judged = j.variants.filter((v: { fidelity?: string[]; sameAs?: string }) => v.fidelity && !v.sameAs);
    expect(judged.map((v: { dtype: string }) => v.dtype)).toEqual(['fp16', 'q8', 'q4']);
    for (const v of judged) expect(v.verdict).toBe(/\(\+\d/.test(v.fidelity[0]) ? 'fail' : 'pass');
    expect(judged.some((v: { verdict: string }) => v.verdict === 'fail')).toBe(true);
  }, 240_000);

  it('refuses a preset without an output folder, and a folder without a model', () => {
    expect(qforge(['quantize', model, '--preset', 'transformers.js', '--json']).json().error.code).toBe('E_INVALID_OPTION');
    const r = qforge(['quantize', dir, '--preset', 'transformers.js', '-o', join(dir, 'x'), '--json']);
    expect(r.code).toBe(2);
    expect(r.json().error.code).toBe('E_INVALID_OPTION');
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });
});

/** The external-data locations a model file records. */
function locations(path: string): string[] {
  const g = decodeModel(readFileSync(path)).graph;
  return [...new Set(g.initializer.flatMap((t) => (t.dataLocation === 1 ? (t.externalData ?? []).filter((e) => e.key === 'location').map((e) => e.value!) : [])))];
}

describe('transformers.js preset: weights in side files', () => {
  // A limit of 1 KiB forces every variant out to a side file, as a model over 2 GiB would be.
  it('names each side file <model file>_data, as transformers.js fetches it, and each variant loads in ONNX Runtime', async () => {
    const out = join(dir, 'external');
    const backend = new OnnxRuntimeBackend();
    const result = await runTransformersPreset(
      {
        model: modelRef(model),
        runsDir: join(dir, 'runs-external'),
        target: resolveTargetProfile('auto', undefined, backend.capabilities.targets),
        evalData: join(tokens, 'eval.npz'),
        evalSamples: 4,
        benchmark: false,
        thresholds: { maxPerplexityIncreasePercent: 5 },
        externalData: { inlineLimitBytes: 1024 },
      },
      out,
      (o) => runQuantize(backend, o, createRunContext()),
    );
    expect(result.passed).toBe(true);
    expect(readdirSync(out).sort()).toEqual(
      ['model_fp16.onnx', 'model_fp16.onnx_data', 'model_int8.onnx', 'model_int8.onnx_data', 'model_q4.onnx', 'model_q4.onnx_data', 'model_quantized.onnx', 'model_quantized.onnx_data'],
    );
    for (const f of ['model_fp16.onnx', 'model_quantized.onnx', 'model_int8.onnx', 'model_q4.onnx']) {
      // The model records the name it ships beside (ONNX Runtime Web matches the fetched file by it).
      expect(locations(join(out, f))).toEqual([`${f}_data`]);
      expect(result.variants.find((v) => v.file === f)?.externalData).toEqual([`${f}_data`]);
      const s = await ort.InferenceSession.create(join(out, f));
      const y = await s.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from([72n, 105n, 33n]), [1, 3]), attention_mask: new ort.Tensor('int64', new BigInt64Array(3).fill(1n), [1, 3]) });
      expect(y.logits.dims).toEqual([1, 3, 256]);
      await s.release();
    }
    // The int8 copy is the q8 model byte for byte in its weights.
    expect(readFileSync(join(out, 'model_int8.onnx_data')).equals(readFileSync(join(out, 'model_quantized.onnx_data')))).toBe(true);
    expect(formatPresetTable(result)).toMatch(/"use_external_data_format": ?\{"model_fp16.onnx":1,"model_quantized.onnx":1,"model_int8.onnx":1,"model_q4.onnx":1\}/);
  }, 240_000);
});
