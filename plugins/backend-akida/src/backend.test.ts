import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AkidaBackend } from './backend';

function fakeSdk(withDevice: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'fake-akida-'));
  mkdirSync(join(dir, 'akida'));
  writeFileSync(
    join(dir, 'akida', '__init__.py'),
    `__version__ = "2.9.0"\nclass _D:\n    desc = "NSoC_v2/0"\ndef devices():\n    return ${withDevice ? '[_D()]' : '[]'}\n`,
  );
  mkdirSync(join(dir, 'cnn2snn'));
  writeFileSync(join(dir, 'cnn2snn', '__init__.py'), '__version__ = "2.9.0"\n');
  return dir;
}

describe('AkidaBackend detection', () => {
  it('reports the SDK missing, with a reason and an install hint, and every verb fails with E_SDK_MISSING', async () => {
    const b = new AkidaBackend({ ...process.env, PYTHONPATH: mkdtempSync(join(tmpdir(), 'empty-')) });
    const d = await b.detect();
    expect(d.available).toBe(false);
    expect(d.reason).toMatch(/akida/);
    expect(d.hint).toMatch(/pip install/);
    await expect(b.quantize()).rejects.toMatchObject({ code: 'E_SDK_MISSING' });
    await expect(b.benchmark()).rejects.toMatchObject({ code: 'E_SDK_MISSING' });
  });

  it('finds a fake SDK on PYTHONPATH with versions and devices; verbs then fail as unsupported', async () => {
    const b = new AkidaBackend({ ...process.env, PYTHONPATH: fakeSdk(true) });
    const d = await b.detect();
    expect(d).toMatchObject({ available: true, version: '2.9.0' });
    expect(d.details).toMatchObject({ devices: ['NSoC_v2/0'] });
    await expect(b.calibrate()).rejects.toMatchObject({ code: 'E_UNSUPPORTED' });
  });

  it('says when no device is visible', async () => {
    const d = await new AkidaBackend({ ...process.env, PYTHONPATH: fakeSdk(false) }).detect();
    expect(d.available).toBe(true);
    expect(d.reason).toMatch(/no Akida device/);
  });

  it('never hangs: a stuck interpreter times out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slow-py-'));
    const slow = join(dir, 'python');
    writeFileSync(slow, '#!/bin/sh\nsleep 30\n');
    chmodSync(slow, 0o755);
    const t0 = Date.now();
    const d = await new AkidaBackend({ ...process.env, QFORGE_PYTHON: slow }, 500).detect();
    expect(d.available).toBe(false);
    expect(d.reason).toMatch(/timed out/);
    expect(Date.now() - t0).toBeLessThan(10000);
  });

  it('reports an interpreter that does not exist', async () => {
    const d = await new AkidaBackend({ ...process.env, QFORGE_PYTHON: '/nonexistent/python9' }).detect();
    expect(d).toMatchObject({ available: false });
    expect(d.reason).toMatch(/cannot be run/);
  });
});
