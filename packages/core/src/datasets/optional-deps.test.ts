// mnist and sharp are optional peers of core: without them, their datasets fail with E_DEPENDENCY_MISSING naming what to install.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'qforge-optional-'));
const dist = join(__dirname, '..', '..', 'dist', 'index.js');
writeFileSync(join(dir, 'a.png'), Buffer.from('89504e470d0a1a0a', 'hex'));

/** Opens `spec` in a fresh Node where `hidden` cannot be required, and returns the error code of the first sample. */
function firstSampleError(spec: string, hidden: string[]): string {
  const script = `
const Module = require('module');
const load = Module._load;
const hidden = ${JSON.stringify(hidden)};
Module._load = function (req, ...rest) { if (hidden.includes(req)) { const e = new Error("Cannot find module '" + req + "'"); e.code = 'MODULE_NOT_FOUND'; throw e; } return load.call(this, req, ...rest); };
const { openDataset, firstSample } = require(${JSON.stringify(dist)});
firstSample(openDataset(${JSON.stringify(spec)}, { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 1, 28, 28] }] }))
  .then(() => console.log('ok'), (e) => console.log(e.code + ' ' + (e.context && e.context.package)));`;
  return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' }).stdout.trim();
}

describe('optional dataset packages', () => {
  it('mnist: and image folders work when mnist and sharp are installed', () => {
    expect(firstSampleError('mnist:calib', [])).toBe('ok');
  });

  it.each([
    ['mnist:calib', 'mnist'],
    [dir, 'sharp'],
  ])('%s without %s fails with E_DEPENDENCY_MISSING naming the package', (spec, pkg) => {
    expect(firstSampleError(spec, [pkg])).toBe(`E_DEPENDENCY_MISSING ${pkg}`);
  });
});
