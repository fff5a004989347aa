// Output safety: an input is never overwritten, only new paths or regular files are replaced, writes are complete or absent.
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertOutputNotInput, assertRegularFile, checkOutputPath, copyFileAtomic, detectModelFormat, modelInputFiles, modelRef, writeFileAtomic } from './files';

const dir = mkdtempSync(join(tmpdir(), 'qforge-files-'));
const model = join(dir, 'm.onnx');
writeFileSync(model, 'not really a model');
const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0;
const fifo = join(dir, 'pipe.onnx');
if (haveMkfifo) spawnSync('mkfifo', [fifo]);
const withFifo = haveMkfifo ? it : it.skip;

describe('outputs never land on inputs', () => {
  it.each([
    ['the same path', () => model],
    ['a path through ..', () => join(dir, 'sub', '..', 'm.onnx')],
    ['a symlink to the input', () => {
      const link = join(dir, 'link.onnx');
      if (!existsSync(link)) symlinkSync(model, link);
      return link;
    }],
    ['a hard link to the input', () => {
      const hard = join(dir, 'hard.onnx');
      if (!existsSync(hard)) linkSync(model, hard);
      return hard;
    }],
  ])('refuses %s with E_OUTPUT_IS_INPUT', (_name, out) => {
    expect(() => assertOutputNotInput(out(), [model])).toThrow(expect.objectContaining({ code: 'E_OUTPUT_IS_INPUT' }));
    expect(readFileSync(model, 'utf8')).toBe('not really a model');
  });

  it('accepts a new path and a different regular file', () => {
    writeFileSync(join(dir, 'other.onnx'), 'other');
    expect(() => checkOutputPath(join(dir, 'new.int8.onnx'), [model])).not.toThrow();
    expect(() => checkOutputPath(join(dir, 'other.onnx'), [model])).not.toThrow();
  });

  it('lists shards and external data among a model\'s input files', () => {
    const tf = join(dir, 'tf');
    mkdirSync(tf);
    writeFileSync(join(tf, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: [] }] }));
    writeFileSync(join(tf, 'group1-shard1of1.bin'), Buffer.alloc(8));
    expect(modelInputFiles(modelRef(tf))).toEqual([join(tf, 'model.json'), join(tf, 'group1-shard1of1.bin')]);
    // An ONNX TensorProto's external_data entry: {1: "location", 2: "weights.bin"}.
    const entry = Buffer.concat([Buffer.from([0x0a, 0x08]), Buffer.from('location'), Buffer.from([0x12, 11]), Buffer.from('weights.bin')]);
    const ext = join(dir, 'ext.onnx');
    writeFileSync(ext, Buffer.concat([Buffer.from([0x08, 0x07]), entry]));
    expect(modelInputFiles({ path: ext, format: 'onnx' })).toEqual([ext, join(dir, 'weights.bin')]);
    expect(modelInputFiles({ path: model, format: 'onnx' })).toEqual([model]);
  });
});

describe('only a new path or a regular file is replaced', () => {
  it('refuses a symlink, a folder and a device node at the output path', () => {
    const target = join(dir, 'elsewhere.txt');
    writeFileSync(target, 'keep me');
    const link = join(dir, 'out-link.onnx');
    symlinkSync(target, link);
    expect(() => checkOutputPath(link, [model])).toThrow(expect.objectContaining({ code: 'E_OUTPUT_UNWRITABLE' }));
    mkdirSync(join(dir, 'a-folder'));
    expect(() => checkOutputPath(join(dir, 'a-folder'), [model])).toThrow(expect.objectContaining({ code: 'E_OUTPUT_UNWRITABLE' }));
    expect(() => checkOutputPath('/dev/null', [model])).toThrow(expect.objectContaining({ code: 'E_OUTPUT_UNWRITABLE' }));
    expect(readFileSync(target, 'utf8')).toBe('keep me');
  });

  withFifo('refuses a FIFO at the output path', async () => {
    await expect(writeFileAtomic(fifo, 'x')).rejects.toMatchObject({ code: 'E_OUTPUT_UNWRITABLE' });
  });

  it('replaces a regular file completely and leaves no temporary file', async () => {
    const out = join(dir, 'w', 'a.bin');
    await writeFileAtomic(out, 'old contents');
    await writeFileAtomic(out, new Uint8Array([1, 2, 3]));
    expect([...readFileSync(out)]).toEqual([1, 2, 3]);
    copyFileAtomic(model, join(dir, 'w', 'copy.onnx'));
    expect(readFileSync(join(dir, 'w', 'copy.onnx'), 'utf8')).toBe('not really a model');
    expect(readdirSync(join(dir, 'w')).sort()).toEqual(['a.bin', 'copy.onnx']);
  });
});

describe('non-regular inputs are refused before they are opened', () => {
  withFifo('a FIFO as a model or a weight shard', () => {
    expect(() => detectModelFormat(fifo)).toThrow(expect.objectContaining({ code: 'E_NOT_REGULAR_FILE' }));
    const tf = join(dir, 'tf-fifo');
    mkdirSync(tf);
    writeFileSync(join(tf, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: ['shard.bin'], weights: [] }] }));
    spawnSync('mkfifo', [join(tf, 'shard.bin')]);
    expect(() => modelRef(tf)).toThrow(expect.objectContaining({ code: 'E_NOT_REGULAR_FILE' }));
  });

  it('/dev/zero is refused; a missing shard is named; a regular file passes', () => {
    expect(() => assertRegularFile('/dev/zero', 'model')).toThrow(expect.objectContaining({ code: 'E_NOT_REGULAR_FILE' }));
    expect(() => assertRegularFile(model, 'model')).not.toThrow();
    const tf = join(dir, 'tf-missing');
    mkdirSync(tf);
    writeFileSync(join(tf, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: ['gone.bin'], weights: [] }] }));
    expect(() => modelRef(tf)).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT', message: expect.stringContaining('gone.bin') }));
  });
});

// A full disk and a read-only file system, for real: a tiny tmpfs in a private mount namespace.
const core = join(__dirname, '..', 'dist', 'index.js');
const mnt = mkdtempSync(join(tmpdir(), 'qforge-tmpfs-'));
const canMount = existsSync(core) && spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=64k tmpfs ${mnt}`]).status === 0;
if (!canMount) console.warn('full-disk tests skipped: cannot mount a tmpfs here (needs unshare -rm and mount, and a built dist/)');
const withTmpfs = canMount ? it : it.skip;

function inTmpfs(mountOptions: string, script: string): { code: string; errno?: string; original?: string; files: string[] } {
  const js = `const c=require(${JSON.stringify(core)});const fs=require('fs');(async()=>{${script}})().catch(e=>{console.log(JSON.stringify({code:'THREW',errno:String(e)}));});`;
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o ${mountOptions} tmpfs ${mnt} && ${JSON.stringify(process.execPath)} -e "$0"`, js], { encoding: 'utf8' });
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
}

describe('a full disk or a read-only file system is E_OUTPUT_UNWRITABLE with the cause', () => {
  withTmpfs('a write larger than the free space fails and keeps the old file', () => {
    const r = inTmpfs('size=64k', `
      fs.writeFileSync(${JSON.stringify(join(mnt, 'model.onnx'))}, 'original');
      let out = { code: 'OK' };
      try { await c.writeFileAtomic(${JSON.stringify(join(mnt, 'model.onnx'))}, new Uint8Array(1 << 20)); }
      catch (e) { out = { code: e.code, errno: e.context && e.context.errno }; }
      out.original = fs.readFileSync(${JSON.stringify(join(mnt, 'model.onnx'))}, 'utf8');
      out.files = fs.readdirSync(${JSON.stringify(mnt)});
      console.log(JSON.stringify(out));`);
    expect(r).toEqual({ code: 'E_OUTPUT_UNWRITABLE', errno: 'ENOSPC', original: 'original', files: ['model.onnx'] });
  });

  withTmpfs('a write that fits succeeds on the same tmpfs', () => {
    const r = inTmpfs('size=64k', `
      await c.writeFileAtomic(${JSON.stringify(join(mnt, 'model.onnx'))}, new Uint8Array(1024));
      console.log(JSON.stringify({ code: 'OK', files: fs.readdirSync(${JSON.stringify(mnt)}), original: String(fs.statSync(${JSON.stringify(join(mnt, 'model.onnx'))}).size) }));`);
    expect(r).toEqual({ code: 'OK', files: ['model.onnx'], original: '1024' });
  });

  withTmpfs('a read-only file system', () => {
    const r = inTmpfs('size=64k,ro', `
      let out = { code: 'OK', files: [] };
      try { await c.writeFileAtomic(${JSON.stringify(join(mnt, 'x.onnx'))}, 'x'); }
      catch (e) { out = { code: e.code, errno: e.context && e.context.errno, files: fs.readdirSync(${JSON.stringify(mnt)}) }; }
      console.log(JSON.stringify(out));`);
    expect(r).toEqual({ code: 'E_OUTPUT_UNWRITABLE', errno: 'EROFS', files: [] });
  });
});
