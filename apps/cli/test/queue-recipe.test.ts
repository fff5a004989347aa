// The trial recipe's pieces that need no queue: scores that survive JSON, table identity, and the
// worker refusing a shared calibration table that changed after the trial was queued.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, type BackendRegistry, type CalibrationTable, type TrialScore } from '@qforge/core';
import { describeMachine } from '@qforge/queue';
import { TRIAL_KIND, decodeScore, encodeScore, tableIdentity, trialHandlers, type TrialRecipe } from '../src/lib/queue';
import { EXAMPLE } from './helpers';

const table = (createdAt: string, max = 1): CalibrationTable => ({
  kind: 'qforge.calibration-table',
  schemaVersion: 1,
  createdAt,
  backend: 'onnxruntime',
  model: { sha256: 'a'.repeat(64), format: 'onnx' },
  method: 'minmax',
  methodOptions: {},
  sampleCount: 8,
  dataset: { kind: 'mnist', source: 'mnist:calib', synthetic: false, labeled: true },
  tensors: { x: { min: 0, max, range: [0, max] } },
});

describe('trial recipes', () => {
  it('a score keeps Infinity and NaN through the queue (an SNR of identical outputs is Infinity)', () => {
    const s = { score: Infinity, quantized: ['conv1'], verify: { samples: 1, labeled: false, outputs: [{ output: 'y', snrDb: Infinity, cosine: 1, maxAbsError: 0, meanAbsError: NaN }], thresholds: {}, passed: true, failures: [] } } as unknown as TrialScore;
    const back = decodeScore(JSON.parse(JSON.stringify(encodeScore(s))));
    expect(back.score).toBe(Infinity);
    expect(back.verify.outputs[0].snrDb).toBe(Infinity);
    expect(back.verify.outputs[0].meanAbsError).toBeNaN();
    expect(back.quantized).toEqual(['conv1']);
  });

  it('a table made again names the same file and job; another table another', () => {
    expect(tableIdentity(table('2026-01-01T00:00:00Z'))).toBe(tableIdentity(table('2026-06-01T12:00:00Z')));
    expect(tableIdentity(table('2026-01-01T00:00:00Z', 2))).not.toBe(tableIdentity(table('2026-01-01T00:00:00Z')));
  });

  it('the worker refuses a shared table whose content changed, or that it cannot read, with a coded error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-recipe-'));
    const path = join(dir, 'table.json');
    writeFileSync(path, JSON.stringify(table('2026-01-01T00:00:00Z', 2)));
    // The handler gets as far as the table: no backend call is needed to refuse it.
    const registry = { resolve: async () => ({ id: 'onnxruntime', capabilities: { targets: [] } }) } as unknown as BackendRegistry;
    const handler = trialHandlers(registry, '0.0.0')[TRIAL_KIND];
    const recipe = (ref: { path: string; sha256: string }): TrialRecipe => ({ backend: 'onnxruntime', target: 'x86-avx2', calibration: { table: ref }, quantize: {}, evaluation: { data: 'mnist:test', samples: 10 }, image: {}, inputShapes: [], outcome: { kind: 'score', metric: 'snr' } });
    const ctx = { id: 't-test', signal: createRunContext().signal, progress: () => undefined, machine: describeMachine('w-test') };
    const job = (ref: { path: string; sha256: string }) => ({ kind: TRIAL_KIND, model: EXAMPLE, modelSha256: '', runsDir: dir, label: 'test', spec: recipe(ref) });
    const changed = await handler(job({ path, sha256: tableIdentity(table('2026-01-01T00:00:00Z', 1)) }), ctx).catch((e) => e);
    expect(changed.code).toBe('E_INVALID_OPTION');
    expect(changed.message).toMatch(/SHA-256/);
    const missing = await handler(job({ path: join(dir, 'gone.json'), sha256: 'b'.repeat(64) }), ctx).catch((e) => e);
    expect(missing.code).toBe('E_INVALID_OPTION');
    expect(missing.message).toMatch(/cannot be read on worker w-test/);
  });
});
