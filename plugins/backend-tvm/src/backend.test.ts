import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TvmBackend } from './backend';

const emptyPath = () => mkdtempSync(join(tmpdir(), 'empty-'));

describe('TvmBackend detection', () => {
  it('reports TVM missing when neither tvmc nor the tvm module exists, and verbs fail with E_SDK_MISSING', async () => {
    const b = new TvmBackend({ ...process.env, PATH: `${emptyPath()}:/usr/bin:/bin`, PYTHONPATH: emptyPath() });
    const d = await b.detect();
    expect(d.available).toBe(false);
    expect(d.reason).toMatch(/tvmc/);
    expect(d.reason).toMatch(/tvm is not importable/);
    await expect(b.benchmark()).rejects.toMatchObject({ code: 'E_SDK_MISSING' });
  });

  it('finds a fake tvmc on PATH', async () => {
    const bin = emptyPath();
    writeFileSync(join(bin, 'tvmc'), '#!/bin/sh\necho 0.18.0\n');
    chmodSync(join(bin, 'tvmc'), 0o755);
    const b = new TvmBackend({ ...process.env, PATH: `${bin}:${process.env.PATH}` });
    expect(await b.detect()).toMatchObject({ available: true, version: '0.18.0', details: { via: 'tvmc' } });
    await expect(b.quantize()).rejects.toMatchObject({ code: 'E_UNSUPPORTED' });
  });

  it('finds a fake tvm Python package when tvmc is absent', async () => {
    const py = emptyPath();
    mkdirSync(join(py, 'tvm'));
    writeFileSync(join(py, 'tvm', '__init__.py'), '__version__ = "0.17.0"\n');
    const d = await new TvmBackend({ ...process.env, PATH: `${emptyPath()}:/usr/bin:/bin:${process.env.PATH}`.replace(/[^:]*tvm[^:]*:?/g, ''), PYTHONPATH: py }).detect();
    expect(d).toMatchObject({ available: true, version: '0.17.0', details: { via: 'python' } });
  });
});
