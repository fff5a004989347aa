// The one symlink policy: shards and dataset entries are read only inside the folder they belong to; FIFOs never.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDataset } from './datasets/open';
import { modelRef, resolveInsideFolder } from './files';
import type { TensorInfo } from './tensor';

const root = mkdtempSync(join(tmpdir(), 'qforge-links-'));
const outside = join(root, 'outside');
mkdirSync(outside);
writeFileSync(join(outside, 'secret.bin'), Buffer.alloc(8));
const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0;
const withFifo = haveMkfifo ? it : it.skip;
const code = (c: string) => expect.objectContaining({ code: c });

/** A tfjs graph model whose one shard is whatever `place` puts at group1-shard1of1.bin. */
function tfjsModel(name: string, place: (shard: string) => void, shardPath = 'group1-shard1of1.bin'): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: [shardPath], weights: [] }] }));
  place(join(dir, 'group1-shard1of1.bin'));
  return dir;
}

describe('weight shards stay in the model folder', () => {
  it('refuses a shard symlinked outside the model folder', () => {
    const dir = tfjsModel('shard-out', (s) => symlinkSync(join(outside, 'secret.bin'), s));
    expect(() => modelRef(dir)).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
  });

  it('refuses a shard path climbing out with ..', () => {
    const dir = tfjsModel('shard-dots', () => undefined, '../outside/secret.bin');
    expect(() => modelRef(dir)).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
  });

  it('follows a symlink that stays inside the model folder', () => {
    const dir = tfjsModel('shard-in', (s) => {
      writeFileSync(join(s, '..', 'real.bin'), Buffer.alloc(8));
      symlinkSync('real.bin', s);
    });
    expect(modelRef(dir).format).toBe('tfjs-graph');
  });

  withFifo('refuses a FIFO shard without opening it', () => {
    const dir = tfjsModel('shard-fifo', (s) => spawnSync('mkfifo', [s]));
    expect(() => modelRef(dir)).toThrow(code('E_NOT_REGULAR_FILE'));
  });
});

describe('resolveInsideFolder', () => {
  it('returns the real path inside and refuses outside, a folder where a file is needed, a dangling link', () => {
    const dir = join(root, 'plain');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a.bin'), '');
    symlinkSync(join(root, 'nothing-here'), join(dir, 'dangling.bin'));
    expect(resolveInsideFolder(join(dir, 'a.bin'), dir, 'file')).toMatch(/a\.bin$/);
    expect(() => resolveInsideFolder(join(outside, 'secret.bin'), dir, 'file')).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
    expect(() => resolveInsideFolder(dir, root, 'file')).toThrow(code('E_NOT_REGULAR_FILE'));
    expect(() => resolveInsideFolder(join(dir, 'dangling.bin'), dir, 'file')).toThrow(code('E_NOT_REGULAR_FILE'));
    expect(resolveInsideFolder(dir, [outside, root], 'folder', { kind: 'folder' })).toMatch(/plain$/);
  });
});

describe('datasets stay in their folder', () => {
  const input: TensorInfo = { name: 'x', dtype: 'float32', shape: [1, 1, 2, 2] };
  // A valid 2×2 grey PNG is not needed: the checks happen when the folder is opened, before decoding.
  const image = Buffer.from('89504e470d0a1a0a', 'hex');
  function labeled(name: string): string {
    const dir = join(root, name);
    mkdirSync(join(dir, 'cat'), { recursive: true });
    writeFileSync(join(dir, 'cat', 'a.png'), image);
    return dir;
  }

  it('refuses a class folder symlinked outside the dataset', () => {
    const dir = labeled('classes-out');
    mkdirSync(join(outside, 'dog'));
    writeFileSync(join(outside, 'dog', 'b.png'), image);
    symlinkSync(join(outside, 'dog'), join(dir, 'dog'));
    expect(() => openDataset(dir, { inputs: [input] })).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
  });

  it('refuses an image symlinked outside the dataset, inside a class folder or at the top', () => {
    const dir = labeled('image-out');
    symlinkSync(join(outside, 'secret.bin'), join(dir, 'cat', 'b.png'));
    expect(() => openDataset(dir, { inputs: [input] })).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
    const flat = join(root, 'flat-out');
    mkdirSync(flat);
    writeFileSync(join(flat, 'a.npy'), '');
    symlinkSync(join(outside, 'secret.bin'), join(flat, 'b.npy'));
    expect(() => openDataset(flat, { inputs: [input] })).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
  });

  it('keeps class folders and images linked inside the dataset as labels', () => {
    const dir = labeled('classes-in');
    mkdirSync(join(dir, '.store', 'dog'), { recursive: true });
    writeFileSync(join(dir, '.store', 'dog', 'b.png'), image);
    symlinkSync(join(dir, '.store', 'dog'), join(dir, 'dog'));
    symlinkSync(join(dir, 'cat', 'a.png'), join(dir, 'cat', 'c.png'));
    const ds = openDataset(dir, { inputs: [input] });
    expect(ds.description.classes).toEqual(['cat', 'dog']);
    expect(ds.description.count).toBe(3);
  });

  withFifo('refuses a FIFO image in a folder and in a class folder before reading', () => {
    const flat = join(root, 'fifo-flat');
    mkdirSync(flat);
    writeFileSync(join(flat, 'a.png'), image);
    spawnSync('mkfifo', [join(flat, 'b.png')]);
    expect(() => openDataset(flat, { inputs: [input] })).toThrow(code('E_NOT_REGULAR_FILE'));
    const dir = labeled('fifo-class');
    spawnSync('mkfifo', [join(dir, 'cat', 'b.png')]);
    expect(() => openDataset(dir, { inputs: [input] })).toThrow(code('E_NOT_REGULAR_FILE'));
    expect(() => openDataset(join(dir, 'cat', 'b.png'), { inputs: [input] })).toThrow(code('E_NOT_REGULAR_FILE'));
  });
});

describe('ONNX external data is checked when the model is opened', () => {
  // An ONNX TensorProto's external_data entry {1: "location", 2: <name>}, found by modelRef without a protobuf parser.
  const withLocation = (name: string) => Buffer.concat([Buffer.from([0x0a, 0x08]), Buffer.from('location'), Buffer.from([0x12, name.length]), Buffer.from(name)]);
  const onnxDir = join(root, 'onnx-ext');
  mkdirSync(onnxDir);
  writeFileSync(join(onnxDir, 'weights.bin'), Buffer.alloc(16));
  symlinkSync(join(outside, 'secret.bin'), join(onnxDir, 'link.bin'));
  const model = (name: string, location: string) => {
    const p = join(onnxDir, name);
    writeFileSync(p, Buffer.concat([Buffer.from([0x08, 0x07]), withLocation(location)]));
    return p;
  };

  it('accepts data beside the model and refuses escapes and missing files, each by code', () => {
    expect(modelRef(model('ok.onnx', 'weights.bin')).format).toBe('onnx');
    expect(() => modelRef(model('dots.onnx', '../outside/secret.bin'))).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
    expect(() => modelRef(model('abs.onnx', join(outside, 'secret.bin')))).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
    expect(() => modelRef(model('link.onnx', 'link.bin'))).toThrow(code('E_PATH_OUTSIDE_FOLDER'));
    expect(() => modelRef(model('missing.onnx', 'missing.bin'))).toThrow(code('E_MODEL_CORRUPT'));
  });
});
