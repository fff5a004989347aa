// The kit applied to test doubles, in a child Jest (a kit that fails must fail there, not here).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Assertion {
  title: string;
  ancestorTitles: string[];
  status: 'passed' | 'failed' | 'pending';
  failureMessages: string[];
}

let files: Record<string, Assertion[]>;

beforeAll(() => {
  const out = join(mkdtempSync(join(tmpdir(), 'qforge-kit-')), 'results.json');
  const jest = require.resolve('jest/bin/jest');
  const r = spawnSync(process.execPath, [jest, '--config', join(__dirname, 'fixtures', 'jest.config.js'), '--json', '--outputFile', out], { encoding: 'utf8', timeout: 240000 });
  // Jest exits 1 here on purpose: some doubles must fail the kit.
  expect(r.error).toBeUndefined();
  const json = JSON.parse(readFileSync(out, 'utf8')) as { testResults: { name: string; assertionResults: Assertion[] }[] };
  files = Object.fromEntries(json.testResults.map((t) => [t.name.split('/').pop()!.replace('.kit.ts', ''), t.assertionResults]));
}, 240000);

const failed = (file: string) => files[file].filter((a) => a.status === 'failed');
const passed = (file: string) => files[file].filter((a) => a.status === 'passed');
const skipped = (file: string) => files[file].filter((a) => a.status === 'pending');

describe('the conformance kit', () => {
  it('passes an honest backend, whose verify fails the perturbed model', () => {
    expect(failed('honest')).toEqual([]);
    expect(passed('honest').map((a) => a.title)).toEqual(expect.arrayContaining(['fails a deliberately perturbed model', 'finds a model identical to itself and passes', 'stops with E_ABORTED when cancelled']));
  });

  it('fails a backend whose verify always says PASS', () => {
    expect(failed('lying').map((a) => a.title)).toEqual(['fails a deliberately perturbed model']);
  });

  it('fails a backend when nothing can show its verify fails (no perturb fixture, no quantize)', () => {
    const f = failed('no-perturb');
    expect(f.map((a) => a.title)).toEqual(['fails a deliberately perturbed model']);
    expect(f[0].failureMessages.join('\n')).toContain('fixtures.perturb');
  });

  it('reports an unavailable backend as skips that carry the reason, and still checks its coded errors', () => {
    expect(failed('unavailable')).toEqual([]);
    const reasons = skipped('unavailable').map((a) => a.title);
    expect(reasons).toEqual(expect.arrayContaining(['describes the fixture model — skipped: unavailable here: the Neuro SDK is not installed', 'fails a deliberately perturbed model — skipped: unavailable here: the Neuro SDK is not installed']));
    expect(reasons).toEqual(expect.arrayContaining(['writes a smaller model and records every decision — skipped: quantize is not declared in capabilities.verbs (undeclared-verbs checks it fails with a coded error)']));
    // Every skip says why.
    for (const t of reasons) expect(t).toMatch(/ — skipped: \S|^excluded by the backend: \S/);
    const ran = passed('unavailable').map((a) => a.title);
    expect(ran).toEqual(expect.arrayContaining(['inspect: fails with a coded error when not declared or not available', 'verify: fails with a coded error when not declared or not available', 'agrees with the detection the tests were registered with (unavailable)']));
  });

  it('fails a backend that declares verbs but is unavailable when the test did not say so', () => {
    const f = failed('unavailable-unannounced');
    expect(f.map((a) => a.title)).toEqual(expect.arrayContaining(['describes the fixture model', 'finds a model identical to itself and passes']));
    for (const a of f) expect(a.failureMessages.join('\n')).toContain('detect() says it is unavailable: the Neuro SDK is not installed');
  });
});
