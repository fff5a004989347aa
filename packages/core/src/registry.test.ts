import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, BackendFactory } from './contract';
import { BackendRegistry, discoverPlugins } from './registry';

function fakeBackend(id: string, available: boolean, formats: Backend['capabilities']['inputFormats'] = ['onnx']): BackendFactory {
  return {
    id,
    create: () =>
      ({
        id,
        displayName: id,
        packageName: `pkg-${id}`,
        version: '1.0.0',
        capabilities: { inputFormats: formats, outputFormats: formats, verbs: ['benchmark'], modes: [], quantFormats: [], calibrationMethods: [], weightTypes: [], activationTypes: [], granularity: [], targets: [], notes: [] },
        detect: async () => (available ? { available } : { available, reason: `${id} SDK missing` }),
      }) as unknown as Backend,
  };
}

describe('BackendRegistry', () => {
  it('resolves auto to the first available backend for the format and verb', async () => {
    const r = new BackendRegistry();
    r.register(fakeBackend('a', false));
    r.register(fakeBackend('b', true));
    expect((await r.resolve({ format: 'onnx', verb: 'benchmark' })).id).toBe('b');
  });
  it('lists every backend reason when none can serve', async () => {
    const r = new BackendRegistry();
    r.register(fakeBackend('a', false));
    r.register(fakeBackend('t', true, ['tflite']));
    await expect(r.resolve({ format: 'onnx', verb: 'benchmark' })).rejects.toMatchObject({
      code: 'E_NO_BACKEND',
      message: expect.stringContaining('a SDK missing'),
    });
  });
  it('refuses unknown and unavailable backends by code', async () => {
    const r = new BackendRegistry();
    r.register(fakeBackend('a', false));
    expect(() => r.get('zzz')).toThrow(expect.objectContaining({ code: 'E_BACKEND_UNKNOWN' }));
    await expect(r.resolve({ backend: 'a', format: 'onnx', verb: 'benchmark' })).rejects.toMatchObject({ code: 'E_BACKEND_UNAVAILABLE' });
  });
  it('discovers plugins by their package.json declaration and reports broken ones without failing', () => {
    const nm = join(mkdtempSync(join(tmpdir(), 'qforge-reg-')), 'node_modules');
    const good = join(nm, '@acme', 'qforge-backend-good');
    mkdirSync(good, { recursive: true });
    writeFileSync(join(good, 'package.json'), JSON.stringify({ name: '@acme/qforge-backend-good', version: '2.0.0', qforge: { backend: './index.js' } }));
    writeFileSync(
      join(good, 'index.js'),
      `exports.backendFactory = { id: 'good', create: () => ({ id: 'good', capabilities: {}, detect: async () => ({ available: true }) }) };`,
    );
    const broken = join(nm, 'qforge-backend-broken');
    mkdirSync(broken, { recursive: true });
    writeFileSync(join(broken, 'package.json'), JSON.stringify({ name: 'qforge-backend-broken', qforge: { backend: './index.js' } }));
    writeFileSync(join(broken, 'index.js'), `throw new Error('boom at load');`);
    const other = join(nm, 'left-pad');
    mkdirSync(other);
    writeFileSync(join(other, 'package.json'), JSON.stringify({ name: 'left-pad' }));

    const { plugins } = discoverPlugins([nm]);
    expect(plugins.map((p) => p.package).sort()).toEqual(['@acme/qforge-backend-good', 'qforge-backend-broken']);
    const r = new BackendRegistry();
    r.loadDiscovered(plugins);
    expect(r.ids()).toEqual(['good']);
    expect(r.failures).toEqual([expect.objectContaining({ package: 'qforge-backend-broken', reason: 'boom at load' })]);
  });
});
