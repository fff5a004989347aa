import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { encodeNpy, parseNpy } from './npy';
import { openDataset } from './open';
import type { Sample } from './dataset';

async function collect(it: AsyncIterable<Sample>): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

const nchw = [{ name: 'x', dtype: 'float32', shape: ['N', 1, 28, 28] as (number | string)[] }];

describe('datasets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qforge-ds-'));

  it('streams MNIST with labels, balanced and deterministic', async () => {
    const ds = openDataset('mnist:test', { inputs: nchw });
    expect(ds.description).toMatchObject({ kind: 'mnist', labeled: true, synthetic: false, count: 1000 });
    const samples = await collect(ds.samples());
    const perClass = new Array(10).fill(0);
    for (const s of samples) perClass[s.label!]++;
    // Every class is present in roughly its natural share (~100 of 1000).
    for (const n of perClass) expect(n).toBeGreaterThan(80);
    expect(samples[0].inputs.x.dims).toEqual([1, 1, 28, 28]);
    const again = await collect(ds.samples({ limit: 1 }));
    expect(Array.from(again[0].inputs.x.data as Float32Array)).toEqual(Array.from(samples[0].inputs.x.data as Float32Array));
  });

  it('rejects MNIST for a model whose input does not hold 784 values', async () => {
    const ds = openDataset('mnist', { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 3, 32, 32] }] });
    await expect(collect(ds.samples({ limit: 1 }))).rejects.toMatchObject({ code: 'E_INPUT_SHAPE' });
    expect(() => openDataset('mnist:9-3', { inputs: nchw })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });

  it('makes reproducible random data and labels it synthetic', async () => {
    const a = await collect(openDataset('random:3', { inputs: nchw }).samples({ limit: 2 }));
    const b = await collect(openDataset('random:3', { inputs: nchw }).samples({ limit: 2 }));
    expect(a[1].inputs.x.data).toEqual(b[1].inputs.x.data);
    expect(openDataset('random', { inputs: nchw }).description.synthetic).toBe(true);
  });

  it('reads .npy files, one sample per file or batched along the first axis', async () => {
    const npyDir = join(dir, 'npy');
    mkdirSync(npyDir);
    writeFileSync(join(npyDir, 'a.npy'), encodeNpy([1, 1, 28, 28], new Float32Array(784).fill(0.5)));
    writeFileSync(join(npyDir, 'b.npy'), encodeNpy([3, 1, 28, 28], new Float32Array(784 * 3).fill(0.25)));
    const samples = await collect(openDataset(npyDir, { inputs: nchw }).samples());
    expect(samples).toHaveLength(4);
    expect((samples[3].inputs.x.data as Float32Array)[0]).toBe(0.25);
    expect(parseNpy(encodeNpy([2], Float32Array.from([1, 2]))).shape).toEqual([2]);
  });

  it('refuses NaN data and wrong shapes with coded errors', async () => {
    const read = async (file: string) => collect(openDataset(file, { inputs: nchw }).samples());
    const bad = new Float32Array(784);
    bad[7] = NaN;
    writeFileSync(join(dir, 'nan.npy'), encodeNpy([1, 1, 28, 28], bad));
    await expect(read(join(dir, 'nan.npy'))).rejects.toMatchObject({ code: 'E_DATA_NOT_FINITE' });
    // Same number of values, wrong rank: never reinterpreted.
    writeFileSync(join(dir, 'flat.npy'), encodeNpy([1, 784], new Float32Array(784)));
    await expect(read(join(dir, 'flat.npy'))).rejects.toMatchObject({ code: 'E_INPUT_SHAPE' });
    writeFileSync(join(dir, 'short.npy'), encodeNpy([1, 1, 10, 10], new Float32Array(100)));
    await expect(read(join(dir, 'short.npy'))).rejects.toMatchObject({ code: 'E_INPUT_SHAPE', context: { declared: ['N', 1, 28, 28], actual: [1, 1, 10, 10] } });
    writeFileSync(join(dir, 'junk.npy'), 'not numpy');
    await expect(read(join(dir, 'junk.npy'))).rejects.toMatchObject({ code: 'E_DATASET_INVALID' });
    expect(() => openDataset(join(dir, 'missing'), { inputs: nchw })).toThrow(expect.objectContaining({ code: 'E_DATASET_NOT_FOUND' }));
  });

  it('decodes, resizes and normalizes images into the model layout; sub-folders are labels', async () => {
    const root = join(dir, 'labeled');
    for (const [cls, colour] of [['cat', { r: 255, g: 0, b: 0 }], ['dog', { r: 0, g: 0, b: 255 }]] as const) {
      mkdirSync(join(root, cls), { recursive: true });
      await sharp({ create: { width: 40, height: 30, channels: 3, background: colour } }).png().toFile(join(root, cls, 'a.png'));
    }
    const inputs = [{ name: 'img', dtype: 'float32', shape: [1, 8, 8, 3] }];
    const ds = openDataset(root, { inputs, image: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } });
    expect(ds.description).toMatchObject({ kind: 'labeled-images', classes: ['cat', 'dog'] });
    const samples = await collect(ds.samples());
    expect(samples.map((s) => s.label)).toEqual([0, 1]);
    const px = samples[1].inputs.img.data as Float32Array;
    // NHWC, blue image: channel 0 is (0-0.5)/0.5 = -1, channel 2 is +1.
    expect([px[0], px[2]]).toEqual([-1, 1]);
    writeFileSync(join(root, 'cat', 'broken.png'), 'not a png');
    await expect(collect(openDataset(root, { inputs }).samples())).rejects.toMatchObject({ code: 'E_DATASET_INVALID' });
  });
});
