// The data says its shape: every rule of docs/datasets.md and its coded errors.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Tensor, TensorInfo } from '../tensor';
import type { UserSample } from './custom';
import { datasetFromIterable } from './custom';
import type { Dataset, Sample } from './dataset';
import { encodeNpy } from './npy';
import { encodeNpz } from './npz';
import { openDataset } from './open';
import { syntheticDims } from './shapes';

async function collect(ds: Dataset, limit?: number): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of ds.samples(limit === undefined ? {} : { limit })) out.push(s);
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'qforge-shapes-'));
// PaddleOCR's recognizer: batch and width symbolic.
const rec: TensorInfo[] = [{ name: 'x', dtype: 'float32', shape: ['p2o.DynamicDimension.0', 3, 48, 'p2o.DynamicDimension.1'] }];
const tokens: TensorInfo[] = [
  { name: 'input_ids', dtype: 'int64', shape: ['batch', 'sequence'] },
  { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'sequence'] },
];
const ramp = (n: number) => Float32Array.from({ length: n }, (_, i) => (i % 97) / 97);

describe('.npy: the data fills symbolic dims', () => {
  it('an array of the input rank is a batch along axis 0; symbolic dims take the data sizes', async () => {
    const f = join(dir, 'lines.npy');
    writeFileSync(f, encodeNpy([5, 3, 48, 320], ramp(5 * 3 * 48 * 320)));
    const ds = openDataset(f, { inputs: rec });
    expect(ds.description.count).toBe(5);
    const samples = await collect(ds);
    expect(samples).toHaveLength(5);
    for (const s of samples) expect(s.inputs.x.dims).toEqual([1, 3, 48, 320]);
    expect(ds.description.inputShapes).toEqual({ x: ['1×3×48×320'] });
    // The second sample starts where the first ends.
    expect((samples[1].inputs.x.data as Float32Array)[0]).toBeCloseTo(((3 * 48 * 320) % 97) / 97, 6);
  });

  it('an array of rank + 1 holds samples along a new leading axis', async () => {
    const f = join(dir, 'stacked.npy');
    writeFileSync(f, encodeNpy([4, 1, 3, 48, 160], ramp(4 * 3 * 48 * 160)));
    const samples = await collect(openDataset(f, { inputs: rec }));
    expect(samples.map((s) => s.inputs.x.dims)).toEqual(new Array(4).fill([1, 3, 48, 160]));
  });

  it('fixed dims must match and other ranks are refused, naming declared and actual dims', async () => {
    const f = join(dir, 'wrong-height.npy');
    writeFileSync(f, encodeNpy([2, 3, 32, 320], ramp(2 * 3 * 32 * 320)));
    expect(() => openDataset(f, { inputs: rec })).toThrow(expect.objectContaining({ code: 'E_INPUT_SHAPE', context: expect.objectContaining({ tensor: 'x', actual: [1, 3, 32, 320] }) }));
    const g = join(dir, 'rank2.npy');
    writeFileSync(g, encodeNpy([48, 320], ramp(48 * 320)));
    expect(() => openDataset(g, { inputs: rec })).toThrow(expect.objectContaining({ code: 'E_INPUT_SHAPE' }));
  });

  it('a rank-1 input (audio) takes a rank-1 array as one sample, never as one sample per value', async () => {
    const audio: TensorInfo[] = [{ name: 'wave', dtype: 'float32', shape: ['samples'] }];
    const f = join(dir, 'wave.npy');
    writeFileSync(f, encodeNpy([16000], ramp(16000)));
    expect((await collect(openDataset(f, { inputs: audio }))).map((s) => s.inputs.wave.dims)).toEqual([[16000]]);
    const g = join(dir, 'waves.npy');
    writeFileSync(g, encodeNpy([3, 8000], ramp(24000)));
    expect((await collect(openDataset(g, { inputs: audio }))).map((s) => s.inputs.wave.dims)).toEqual([[8000], [8000], [8000]]);
  });

  it('a fixed batch cuts the array into that batch and refuses a remainder', async () => {
    const b2: TensorInfo[] = [{ name: 'x', dtype: 'float32', shape: [2, 4] }];
    const f = join(dir, 'b2.npy');
    writeFileSync(f, encodeNpy([6, 4], ramp(24)));
    expect((await collect(openDataset(f, { inputs: b2 }))).map((s) => s.inputs.x.dims)).toEqual([[2, 4], [2, 4], [2, 4]]);
    writeFileSync(f, encodeNpy([5, 4], ramp(20)));
    expect(() => openDataset(f, { inputs: b2 })).toThrow(expect.objectContaining({ code: 'E_INPUT_SHAPE' }));
  });

  it('widens integers into float inputs but never reinterprets floats as integers', async () => {
    const f = join(dir, 'ints.npy');
    writeFileSync(f, encodeNpy([1, 3], BigInt64Array.from([1n, 2n, 3n]), 'int64'));
    const [s] = await collect(openDataset(f, { inputs: [{ name: 'x', dtype: 'float32', shape: ['n', 3] }] }));
    expect(Array.from(s.inputs.x.data as Float32Array)).toEqual([1, 2, 3]);
    const g = join(dir, 'floats.npy');
    writeFileSync(g, encodeNpy([1, 3], Float32Array.from([1, 2, 3.5])));
    await expect(collect(openDataset(g, { inputs: [{ name: 'x', dtype: 'int64', shape: ['n', 3] }] }))).rejects.toMatchObject({ code: 'E_DATASET_INVALID' });
  });
});

describe('.npz: any number of inputs, keyed by input name', () => {
  it('a folder holds one sample per file; int64 inputs stay int64 and sequence lengths may differ', async () => {
    const d = join(dir, 'tokens');
    mkdirSync(d);
    for (const len of [5, 9]) {
      const ids = BigInt64Array.from({ length: len }, (_, i) => BigInt(100 + i));
      writeFileSync(join(d, `s${len}.npz`), encodeNpz({ input_ids: { dtype: 'int64', dims: [1, len], data: ids }, attention_mask: { dtype: 'int64', dims: [1, len], data: new BigInt64Array(len).fill(1n) } }));
    }
    const ds = openDataset(d, { inputs: tokens });
    const samples = await collect(ds);
    expect(samples.map((s) => s.inputs.input_ids.dims)).toEqual([[1, 5], [1, 9]]);
    expect(samples[0].inputs.input_ids.dtype).toBe('int64');
    expect(samples[0].inputs.input_ids.data).toBeInstanceOf(BigInt64Array);
    expect((samples[1].inputs.input_ids.data as BigInt64Array)[8]).toBe(108n);
    expect(ds.description).toMatchObject({ kind: 'npz', count: 2, inputShapes: { input_ids: ['1×5', '1×9'], attention_mask: ['1×5', '1×9'] } });
  });

  it('one file with a shared extra leading axis holds N samples; scalars and int32 widen exactly', async () => {
    const vad: TensorInfo[] = [
      { name: 'input', dtype: 'float32', shape: [null, null] },
      { name: 'state', dtype: 'float32', shape: [2, null, 128] },
      { name: 'sr', dtype: 'int64', shape: [] },
    ];
    const f = join(dir, 'vad.npz');
    writeFileSync(
      f,
      encodeNpz({
        input: { dtype: 'float32', dims: [3, 1, 512], data: ramp(3 * 512) },
        state: { dtype: 'float32', dims: [3, 2, 1, 128], data: new Float32Array(3 * 256) },
        sr: { dtype: 'int32', dims: [3], data: Int32Array.from([16000, 16000, 8000]) },
      }),
    );
    const samples = await collect(openDataset(f, { inputs: vad }));
    expect(samples).toHaveLength(3);
    expect(samples[2].inputs.sr).toEqual({ dtype: 'int64', dims: [], data: BigInt64Array.from([8000n]) });
    expect(samples[1].inputs.state.dims).toEqual([2, 1, 128]);
    expect(samples[1].inputs.input.dims).toEqual([1, 512]);
  });

  it('refuses missing and unknown keys, mixed layouts and float data for integer inputs', () => {
    const ids = { dtype: 'int64' as const, dims: [1, 4], data: new BigInt64Array(4) };
    const w = (name: string, arrays: Parameters<typeof encodeNpz>[0]) => {
      const f = join(dir, `${name}.npz`);
      writeFileSync(f, encodeNpz(arrays));
      return async () => collect(openDataset(f, { inputs: tokens }));
    };
    return Promise.all([
      expect(w('missing', { input_ids: ids })()).rejects.toMatchObject({ code: 'E_DATASET_INVALID' }),
      expect(w('extra', { input_ids: ids, attention_mask: ids, labels: ids })()).rejects.toMatchObject({ code: 'E_DATASET_INVALID' }),
      expect(w('mixed', { input_ids: ids, attention_mask: { ...ids, dims: [1, 1, 4] } })()).rejects.toMatchObject({ code: 'E_INPUT_SHAPE' }),
      expect(w('floaty', { input_ids: ids, attention_mask: { dtype: 'float32', dims: [1, 4], data: new Float32Array(4) } })()).rejects.toMatchObject({ code: 'E_DATASET_INVALID' }),
    ]);
  });
});

describe('data qforge makes itself', () => {
  it('random: a symbolic batch is 1, any other symbolic dim is an error that names --input-shape', async () => {
    expect(syntheticDims({ name: 'x', dtype: 'float32', shape: ['N', 3, 224, 224] })).toEqual([1, 3, 224, 224]);
    let err: { code?: string; hint?: string } = {};
    try {
      openDataset('random', { inputs: rec });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.code).toBe('E_INPUT_SHAPE');
    expect(err.hint).toContain('--input-shape x:1,3,48,');
    expect(() => openDataset('random', { inputs: tokens })).toThrow(expect.objectContaining({ code: 'E_DATASET_INVALID' }));
    const fixed = await collect(openDataset('random', { inputs: [{ ...rec[0], shape: [1, 3, 48, 320] }] }), 1);
    expect(fixed[0].inputs.x.dims).toEqual([1, 3, 48, 320]);
  });
});

describe('images', () => {
  it('--image-size fills symbolic height and width (no loop), and pad keeps the aspect ratio with zeros right', async () => {
    const d = join(dir, 'lines');
    mkdirSync(d);
    // A 100×48 white line: under `pad` into 320×48 it covers the left 100 columns only.
    await sharp({ create: { width: 100, height: 48, channels: 3, background: { r: 255, g: 255, b: 255 } } }).png().toFile(join(d, 'a.png'));
    const image = { width: 320, height: 48, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], fit: 'pad' as const };
    const ds = openDataset(d, { inputs: rec, image });
    const [s] = await collect(ds);
    expect(s.inputs.x.dims).toEqual([1, 3, 48, 320]);
    const x = s.inputs.x.data as Float32Array;
    expect(x[10]).toBeCloseTo(1, 5); // white, normalized
    expect(x[200]).toBe(0); // padding, after normalization
    expect(ds.description.inputShapes).toEqual({ x: ['1×3×48×320'] });
    // Without a size the model's symbolic dims cannot be guessed.
    expect(() => openDataset(d, { inputs: rec })).toThrow(expect.objectContaining({ code: 'E_DATASET_INVALID' }));
  });
});

describe('datasetFromIterable: your own data from Node', () => {
  const inputs: TensorInfo[] = [{ name: 'x', dtype: 'float32', shape: ['n', 2] }];
  it('reads a factory as often as needed, checks samples against the inputs and records shapes', async () => {
    const ds = datasetFromIterable(async function* (): AsyncGenerator<UserSample | Record<string, Tensor>> {
      yield { x: { dtype: 'float32' as const, dims: [1, 2], data: Float32Array.from([1, 2]) } };
      yield { inputs: { x: { dtype: 'float32' as const, dims: [1, 2], data: Float32Array.from([3, 4]) } }, label: 1 };
    }, { name: 'mine', inputs });
    expect(await collect(ds)).toHaveLength(2);
    const again = await collect(ds);
    expect(again[1].label).toBe(1);
    expect(ds.description).toMatchObject({ kind: 'custom', source: 'mine', labeled: true, inputShapes: { x: ['1×2'] } });
  });

  it('a plain iterable read twice is a coded error, and a sample missing an input is refused', async () => {
    const once = datasetFromIterable([{ x: { dtype: 'float32' as const, dims: [1, 2], data: new Float32Array(2) } }]);
    await collect(once);
    await expect(collect(once)).rejects.toMatchObject({ code: 'E_DATASET_INVALID' });
    const wrong = datasetFromIterable(() => [{ y: { dtype: 'float32' as const, dims: [1, 2], data: new Float32Array(2) } }], { inputs });
    await expect(collect(wrong)).rejects.toMatchObject({ code: 'E_DATASET_INVALID' });
    const badShape = datasetFromIterable(() => [{ x: { dtype: 'float32' as const, dims: [1, 3], data: new Float32Array(3) } }], { inputs });
    await expect(collect(badShape)).rejects.toMatchObject({ code: 'E_INPUT_SHAPE' });
  });
});
