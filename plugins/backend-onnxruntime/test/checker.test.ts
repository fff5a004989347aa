// Independent validity check: ONNX's own checker (Debian's python3-onnx) must accept what we write.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, modelRef, openDataset, resolveTargetProfile } from '@qforge/core';
import { saveModel } from '@qforge/onnx';
import { OnnxRuntimeBackend } from '../src/backend';
import { messyCnn, mlp } from './fixtures';

const PY = '/usr/bin/python3';
const probe = spawnSync(PY, ['-c', 'import onnx; print(onnx.__version__)'], { encoding: 'utf8' });
const available = probe.status === 0;
// CI installs python3-onnx (.ci/run); elsewhere the check is skipped and says so.
const maybe = available || process.env.CI ? describe : describe.skip;
if (!available && !process.env.CI) console.warn('onnx.checker tests skipped: apt-get install python3-onnx to run them');

function check(path: string): { ok: boolean; message: string } {
  const r = spawnSync(PY, ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path], { encoding: 'utf8' });
  return { ok: r.status === 0, message: r.stderr };
}

maybe('onnx.checker accepts quantized models', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qforge-checker-'));
  const backend = new OnnxRuntimeBackend();
  const ctx = createRunContext();
  const target = resolveTargetProfile('x86-avx2');
  const d = target.defaults;
  const opts = (output: string, mode: 'static' | 'dynamic') => ({ output, target, mode, format: 'qdq' as const, perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [] });

  it('static QDQ from an opset-11 export with Constant weights and BatchNorm', async () => {
    expect(available).toBe(true);
    const src = join(dir, 'messy.onnx');
    await saveModel(messyCnn(), src);
    const model = modelRef(src);
    const table = await backend.calibrate(model, openDataset('random', { inputs: await backend.modelInputs(model) }), { method: 'minmax', samples: 4, target }, ctx);
    await backend.quantize(model, table, opts(join(dir, 'messy.int8.onnx'), 'static'), ctx);
    expect(check(join(dir, 'messy.int8.onnx'))).toEqual({ ok: true, message: '' });
  });

  it('QOperator', async () => {
    const src = join(dir, 'messy-qop.onnx');
    await saveModel(messyCnn(), src);
    const model = modelRef(src);
    const table = await backend.calibrate(model, openDataset('random', { inputs: await backend.modelInputs(model) }), { method: 'minmax', samples: 4, target }, ctx);
    await backend.quantize(model, table, { ...opts(join(dir, 'messy.qop.onnx'), 'static'), format: 'qoperator' }, ctx);
    expect(check(join(dir, 'messy.qop.onnx'))).toEqual({ ok: true, message: '' });
  });

  it('dynamic', async () => {
    const src = join(dir, 'mlp.onnx');
    await saveModel(mlp(), src);
    await backend.quantize(modelRef(src), undefined, opts(join(dir, 'mlp.int8.onnx'), 'dynamic'), ctx);
    expect(check(join(dir, 'mlp.int8.onnx'))).toEqual({ ok: true, message: '' });
  });
});
