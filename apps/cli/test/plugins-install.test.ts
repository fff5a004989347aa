// `qforge plugins install ./x.tgz` and `./folder`: local plugins install with the CLI's own @qforge peers, and broken ones are refused.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXAMPLE, qforge } from './helpers';

const root = mkdtempSync(join(tmpdir(), 'qforge-plugin-install-'));

/** A plugin folder and its `npm pack` tarball. */
function plugin(name: string, manifest: object, entry: string): { dir: string; tgz: string } {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'index.js', oclif: {}, ...manifest }));
  writeFileSync(join(dir, 'index.js'), entry);
  const file = execFileSync('npm', ['pack', '--silent', '--pack-destination', root], { cwd: dir, encoding: 'utf8', env: { ...process.env, npm_config_loglevel: 'error' } }).trim().split('\n').pop()!;
  return { dir, tgz: join(root, file) };
}

const sizer = plugin(
  'qforge-backend-sizer2',
  { qforge: { backend: './index.js' }, peerDependencies: { '@qforge/core': '^0.1.0', '@qforge/onnx': '^0.1.0' } },
  `const { defineCapabilities, errUnsupported } = require('@qforge/core');
const { describeModel, graphInputs, loadModel } = require('@qforge/onnx');
class Sizer {
  constructor() { this.id = 'sizer2'; this.displayName = 'Sizer'; this.packageName = 'qforge-backend-sizer2'; this.version = '1.0.0'; this.capabilities = defineCapabilities({ inputFormats: ['onnx'], verbs: ['inspect'] }); }
  async detect() { return { available: true, version: '1.0.0' }; }
  async inspect(m) { const info = await describeModel(loadModel(m.path)); return { ...info, notes: ['inspected by sizer2'] }; }
  async modelInputs(m) { return graphInputs(loadModel(m.path).proto.graph); }
  async calibrate() { throw errUnsupported(this.id, 'calibrate', 'no'); }
  async quantize() { throw errUnsupported(this.id, 'quantize', 'no'); }
  async benchmark() { throw errUnsupported(this.id, 'benchmark', 'no'); }
  async verify() { throw errUnsupported(this.id, 'verify', 'no'); }
}
exports.backendFactory = { id: 'sizer2', create: () => new Sizer() };
`,
);
const ids = (env: NodeJS.ProcessEnv) => qforge(['backends', '--json'], { env }).json().backends.map((b: { id: string }) => b.id);

describe('qforge plugins install from local files', () => {
  it.each([
    ['a tarball given as ./x.tgz', () => ({ cwd: root, spec: `./${sizer.tgz.split('/').pop()}` })],
    ['a folder', () => ({ cwd: root, spec: sizer.dir })],
  ])('installs %s, with @qforge peers linked to the CLI, and runs it', (_name, where) => {
    const data = mkdtempSync(join(tmpdir(), 'qforge-data-'));
    const env = { XDG_DATA_HOME: data };
    const { cwd, spec } = where();
    const r = qforge(['plugins', 'install', spec, '--json'], { env, cwd });
    expect(r.code).toBe(0);
    expect(r.json().installed).toEqual([expect.objectContaining({ name: 'qforge-backend-sizer2', linkedPeers: ['@qforge/core', '@qforge/onnx'] })]);
    expect(ids(env)).toContain('sizer2');
    expect(qforge(['inspect', EXAMPLE, '--backend', 'sizer2', '--json'], { env }).json().notes).toContain('inspected by sizer2');
    expect(qforge(['plugins', 'uninstall', 'qforge-backend-sizer2'], { env }).code).toBe(0);
    expect(ids(env)).not.toContain('sizer2');
  });

  it('refuses a package that is not a qforge backend, a missing path and a plugin that fails to load', () => {
    const data = mkdtempSync(join(tmpdir(), 'qforge-data-'));
    const env = { XDG_DATA_HOME: data };
    const notBackend = plugin('not-a-backend', {}, 'module.exports = {};');
    expect(qforge(['plugins', 'install', notBackend.tgz, '--json'], { env }).json().error.code).toBe('E_INVALID_OPTION');
    expect(qforge(['plugins', 'install', './missing.tgz', '--json'], { env, cwd: root }).json().error.code).toBe('E_INVALID_OPTION');
    const broken = plugin('qforge-backend-broken2', { qforge: { backend: './index.js' } }, 'throw new Error("cannot find native library");');
    const r = qforge(['plugins', 'install', broken.tgz, '--json'], { env });
    expect(r.code).toBe(2);
    expect(r.json().error).toMatchObject({ code: 'E_BACKEND_LOAD_FAILED', message: expect.stringMatching(/cannot find native library/) });
    expect(ids(env)).not.toContain('sizer2');
    expect(existsSync(join(data, 'qforge', 'node_modules', 'not-a-backend'))).toBe(false);
  });
});
