// A backend written by a "third party": its own folder outside the repo's workspaces, public API only.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { runBackendConformance } from '@qforge/testkit';
import { EXAMPLE, qforge } from './helpers';

const root = mkdtempSync(join(tmpdir(), 'qforge-thirdparty-'));
const nm = join(root, 'node_modules');
const pkg = join(nm, 'qforge-backend-sizer');
mkdirSync(pkg, { recursive: true });
// The plugin's peer dependencies, "installed" beside it (symlinks to the packages, entered only through their exports).
mkdirSync(join(nm, '@qforge'), { recursive: true });
for (const p of ['core', 'onnx']) symlinkSync(dirname(require.resolve(`@qforge/${p}/package.json`)), join(nm, '@qforge', p));

writeFileSync(
  join(pkg, 'package.json'),
  JSON.stringify({ name: 'qforge-backend-sizer', version: '1.2.3', main: 'index.js', qforge: { backend: './index.js' }, oclif: {}, peerDependencies: { '@qforge/core': '^0.1.0', '@qforge/onnx': '^0.1.0' } }, null, 2),
);
// Only the documented public API: SdkAdapterBackend-free, a plain object implementing Backend.
writeFileSync(
  join(pkg, 'index.js'),
  `const { errUnsupported, sha256File } = require('@qforge/core');
const { loadModel, describeModel, graphInputs } = require('@qforge/onnx');
class SizerBackend {
  constructor() {
    this.id = 'sizer';
    this.displayName = 'Sizer (example third-party backend)';
    this.packageName = 'qforge-backend-sizer';
    this.version = '1.2.3';
    this.capabilities = { inputFormats: ['onnx'], outputFormats: [], verbs: ['inspect'], modes: [], quantFormats: [], calibrationMethods: [], weightTypes: [], activationTypes: [], granularity: [], targets: [], notes: ['inspects ONNX models; nothing else'] };
  }
  async detect() { return { available: true, version: '1.2.3', runtime: 'pure JavaScript' }; }
  async inspect(model) { const info = await describeModel(loadModel(model.path)); return { ...info, notes: [...(info.notes || []), 'inspected by sizer'] }; }
  async modelInputs(model) { return graphInputs(loadModel(model.path).proto.graph); }
  async calibrate() { throw errUnsupported(this.id, 'calibrate', 'inspect only'); }
  async quantize() { throw errUnsupported(this.id, 'quantize', 'inspect only'); }
  async benchmark() { throw errUnsupported(this.id, 'benchmark', 'inspect only'); }
  async verify() { throw errUnsupported(this.id, 'verify', 'inspect only'); }
}
exports.backendFactory = { id: 'sizer', create: () => new SizerBackend() };
`,
);

describe('a third-party backend outside the repo', () => {
  it('is discovered by the CLI and runs', () => {
    const env = { QFORGE_PLUGIN_PATH: nm };
    const list = qforge(['backends', '--json'], { env });
    expect(list.code).toBe(0);
    expect(list.json().backends.find((b: { id: string }) => b.id === 'sizer')).toMatchObject({ package: 'qforge-backend-sizer', version: '1.2.3', available: true });
    const info = qforge(['inspect', EXAMPLE, '--backend', 'sizer', '--json'], { env });
    expect(info.code).toBe(0);
    expect(info.json().notes).toContain('inspected by sizer');
  });

  it('is found after `qforge plugins link`, oclif\'s own plugin manager', () => {
    const data = mkdtempSync(join(tmpdir(), 'qforge-plugins-data-'));
    const env = { XDG_DATA_HOME: data };
    const link = qforge(['plugins', 'link', pkg], { env });
    expect(link.code).toBe(0);
    const list = qforge(['backends', '--json'], { env });
    expect(list.json().backends.map((b: { id: string }) => b.id)).toContain('sizer');
    expect(qforge(['plugins', 'unlink', 'qforge-backend-sizer'], { env }).code).toBe(0);
    expect(qforge(['backends', '--json'], { env }).json().backends.map((b: { id: string }) => b.id)).not.toContain('sizer');
  });

  it('a plugin that fails to load is reported, and the CLI keeps working', () => {
    const broken = join(nm, 'qforge-backend-broken');
    mkdirSync(broken);
    writeFileSync(join(broken, 'package.json'), JSON.stringify({ name: 'qforge-backend-broken', version: '0.0.1', qforge: { backend: './index.js' } }));
    writeFileSync(join(broken, 'index.js'), 'throw new Error("cannot find native library");');
    const r = qforge(['backends', '--json'], { env: { QFORGE_PLUGIN_PATH: nm } });
    expect(r.code).toBe(0);
    expect(r.json().pluginFailures).toEqual([expect.objectContaining({ package: 'qforge-backend-broken', reason: 'cannot find native library' })]);
  });
});

// The same conformance kit every bundled backend runs.
// eslint-disable-next-line @typescript-eslint/no-require-imports
runBackendConformance({ factory: require(join(pkg, 'index.js')).backendFactory, fixtures: { model: EXAMPLE } });
