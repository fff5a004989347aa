import { chmodSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertTableMatches, validateCalibrationTable, type CalibrationTable } from './calibration-table';
import { ErrorCodes, QforgeError, errModelNotFound } from './errors';
import { detectModelFormat, sha256Async, sha256Bytes, writeFileAtomic } from './files';
import { detectTargetProfile, readCpuInfo, resolveTargetProfile } from './target';

describe('errors', () => {
  it('keeps the code table sorted and every factory carries a hint', () => {
    const codes = Object.keys(ErrorCodes);
    expect([...codes].sort()).toEqual(codes);
    const e = errModelNotFound('/x.onnx');
    expect(e).toBeInstanceOf(QforgeError);
    expect(e.code).toBe('E_MODEL_NOT_FOUND');
    expect(e.hint).toBeTruthy();
    expect(e.toJSON()).toMatchObject({ code: 'E_MODEL_NOT_FOUND', context: { path: '/x.onnx' } });
  });
});

describe('target profiles', () => {
  it('reads AVX2 without VNNI as x86-avx2 (reduce-range weights, uint8 activations)', () => {
    const cpu = readCpuInfo('model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n', 'x64');
    const p = detectTargetProfile(cpu);
    expect(p.id).toBe('x86-avx2');
    expect(p.defaults).toMatchObject({ reduceRange: true, activationType: 'uint8', weightType: 'int8' });
  });
  it('reads VNNI and arm64', () => {
    expect(detectTargetProfile(readCpuInfo('flags : avx2 avx512f avx512_vnni\n', 'x64')).id).toBe('x86-vnni');
    expect(detectTargetProfile(readCpuInfo('Features : fp asimd\n', 'arm64')).id).toBe('arm64');
    expect(() => resolveTargetProfile('z80')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});

describe('files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qforge-files-'));
  it('tells model formats apart by content and refuses what is not a model', () => {
    writeFileSync(join(dir, 'm.tflite'), Buffer.from([0x1c, 0, 0, 0, 0x54, 0x46, 0x4c, 0x33, 0, 0]));
    expect(detectModelFormat(join(dir, 'm.tflite'))).toBe('tflite');
    writeFileSync(join(dir, 'model.json'), JSON.stringify({ modelTopology: { class_name: 'Sequential' }, weightsManifest: [] }));
    expect(detectModelFormat(dir)).toBe('tfjs-layers');
    writeFileSync(join(dir, 'notes.txt'), 'hello');
    expect(() => detectModelFormat(join(dir, 'notes.txt'))).toThrow(expect.objectContaining({ code: 'E_MODEL_FORMAT_UNKNOWN' }));
    expect(() => detectModelFormat(join(dir, 'nope.onnx'))).toThrow(expect.objectContaining({ code: 'E_MODEL_NOT_FOUND' }));
  });
  it('writes atomically and refuses unwritable folders without leaving temp files', async () => {
    await writeFileAtomic(join(dir, 'out', 'a.txt'), 'hello');
    expect(readFileSync(join(dir, 'out', 'a.txt'), 'utf8')).toBe('hello');
    const locked = join(dir, 'locked');
    require('node:fs').mkdirSync(locked);
    chmodSync(locked, 0o500);
    if (process.getuid?.() === 0) {
      // root ignores permission bits; a file standing where a folder must be is refused for everyone.
      writeFileSync(join(dir, 'afile'), 'x');
      await expect(writeFileAtomic(join(dir, 'afile', 'b.txt'), 'x')).rejects.toMatchObject({ code: 'E_OUTPUT_UNWRITABLE' });
    } else {
      await expect(writeFileAtomic(join(locked, 'b.txt'), 'x')).rejects.toMatchObject({ code: 'E_OUTPUT_UNWRITABLE' });
    }
    expect(readdirSync(locked)).toEqual([]);
  });
});

describe('calibration tables', () => {
  const table: CalibrationTable = {
    kind: 'qforge.calibration-table',
    schemaVersion: 1,
    createdAt: new Date().toISOString(),
    backend: 'onnxruntime',
    model: { sha256: 'a'.repeat(64), format: 'onnx' },
    method: 'minmax',
    methodOptions: {},
    sampleCount: 4,
    dataset: { kind: 'random', source: 'random:0', synthetic: true, labeled: false },
    tensors: { x: { min: -1, max: 1, range: [-1, 1] } },
  };
  it('validates the schema and refuses a table for another model', () => {
    expect(validateCalibrationTable(JSON.parse(JSON.stringify(table)))).toBeTruthy();
    expect(() => validateCalibrationTable({ ...table, method: 'magic' })).toThrow(expect.objectContaining({ code: 'E_CALIB_TABLE_INVALID' }));
    expect(() => assertTableMatches(table, 'b'.repeat(64))).toThrow(expect.objectContaining({ code: 'E_CALIB_TABLE_MISMATCH' }));
    expect(() => assertTableMatches(table, 'a'.repeat(64), ['x', 'y'])).toThrow(expect.objectContaining({ code: 'E_CALIB_TABLE_MISMATCH' }));
  });
});

describe('sha256Async', () => {
  it('hashes off the main thread to the same digest as the synchronous hash', async () => {
    const data = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 31) & 0xff);
    expect(await sha256Async(data)).toBe(sha256Bytes(data));
    expect(await sha256Async(new Uint8Array(0))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});
