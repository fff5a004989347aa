// Opens a dataset from the CLI's vocabulary: a path, `random[:seed]` or `mnist[:split|:a-b]`.
import { existsSync, readdirSync, statSync, type Stats } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { assertRegularFile, resolveInsideFolder } from '../files';
import { errDependencyMissing, errDataNotFinite, errDatasetEmpty, errDatasetInvalid, errDatasetNotFound, errInputShape, errInvalidOption } from '../errors';
import { elementCount, firstNonFinite, type Tensor, type TensorInfo } from '../tensor';
import type { Dataset, DatasetDescription, ImagePreprocessing, Layout, Sample } from './dataset';
import { NpyFile, decodeElements } from './npy';
import { readNpz, type NpzEntry } from './npz';
import { conformDataset, fillFromData, fixedDim, syntheticDims } from './shapes';
import { withLabelsBeside } from './labels';

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

/**
 * Opens a dataset for a model's inputs. Every sample is checked against the inputs and the
 * concrete shapes fed are recorded in `description.inputShapes`.
 */
export function openDataset(spec: string, opts: OpenDatasetOptions): Dataset {
  if (!opts.inputs.length) throw errDatasetInvalid(spec, 'the model declares no inputs');
  return conformDataset(withLabelsBeside(spec, openRaw(spec, opts)), opts.inputs);
}

function openRaw(spec: string, opts: OpenDatasetOptions): Dataset {
  if (spec === 'random' || spec.startsWith('random:')) {
    const seed = spec.includes(':') ? Number(spec.split(':')[1]) : opts.seed ?? 0;
    if (!Number.isInteger(seed)) throw errInvalidOption('--data', `bad seed in "${spec}"`, 'Use random or random:<integer>.');
    return randomDataset(opts.inputs, seed);
  }
  if (spec === 'mnist' || spec.startsWith('mnist:')) return mnistDataset(spec, opts.inputs);
  const abs = resolve(spec);
  if (!existsSync(abs)) throw errDatasetNotFound(abs);
  if (!statSync(abs).isDirectory()) {
    assertRegularFile(abs, 'data file');
    if (extname(abs).toLowerCase() === '.npy') return npyDataset(abs, [abs], opts.inputs);
    if (extname(abs).toLowerCase() === '.npz') return npzDataset(abs, [abs], opts.inputs, true);
    if (IMAGE_EXT.has(extname(abs).toLowerCase())) return imageDataset(abs, [{ file: abs }], opts, []);
    throw errDatasetInvalid(abs, 'a single file must be a .npy or .npz array or an image');
  }
  const entries = listEntries(abs, abs);
  const npys = entries.filter((e) => e.kind === 'file' && extname(e.name).toLowerCase() === '.npy').map((e) => e.path);
  const npzs = entries.filter((e) => e.kind === 'file' && extname(e.name).toLowerCase() === '.npz').map((e) => e.path);
  const images = entries.filter((e) => e.kind === 'file' && IMAGE_EXT.has(extname(e.name).toLowerCase())).map((e) => ({ file: e.path }));
  const dirs = entries.filter((e) => e.kind === 'folder' && !e.name.startsWith('.'));
  if (npys.length && npzs.length) throw errDatasetInvalid(abs, 'the folder mixes .npy and .npz files', 'Keep one kind per folder.');
  if (npys.length) return npyDataset(abs, npys, opts.inputs);
  if (npzs.length) return npzDataset(abs, npzs, opts.inputs, false);
  if (images.length) return imageDataset(abs, images, opts, []);
  if (dirs.length) {
    const classes = dirs.map((d) => d.name);
    const files: { file: string; label: number }[] = [];
    dirs.forEach((d, label) => {
      for (const f of listEntries(d.path, abs)) if (f.kind === 'file' && IMAGE_EXT.has(extname(f.name).toLowerCase())) files.push({ file: f.path, label });
    });
    if (files.length) return imageDataset(abs, files, opts, classes);
  }
  throw errDatasetEmpty(abs);
}

const DATA_EXT = new Set([...IMAGE_EXT, '.npy', '.npz']);

/**
 * A dataset folder's entries, sorted, under the one symlink policy (core's resolveInsideFolder):
 * a symlinked file or class folder is followed only when it stays inside the dataset's `root`;
 * a FIFO, device or socket with a data extension is refused before anything opens it.
 */
function listEntries(folder: string, root: string): { name: string; path: string; kind: 'file' | 'folder' }[] {
  const out: { name: string; path: string; kind: 'file' | 'folder' }[] = [];
  for (const e of readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(folder, e.name);
    const data = DATA_EXT.has(extname(e.name).toLowerCase());
    if (e.isFile()) out.push({ name: e.name, path, kind: 'file' });
    else if (e.isDirectory()) out.push({ name: e.name, path, kind: 'folder' });
    else if (e.isSymbolicLink()) {
      let target: Stats | undefined;
      try {
        target = statSync(path);
      } catch {
        target = undefined;
      }
      const kind = target?.isDirectory() ? 'folder' : 'file';
      if (kind === 'folder' ? e.name.startsWith('.') : !data) continue;
      resolveInsideFolder(path, root, kind === 'folder' ? 'dataset class folder' : 'dataset file', { kind });
      out.push({ name: e.name, path, kind });
    } else if (data) {
      resolveInsideFolder(path, root, 'dataset file');
    }
  }
  return out;
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

/** Fixed-size data (MNIST digits) into an input whose only free dim may be the batch. */
function fitToInput(input: TensorInfo, data: Float32Array, id: string, dataDims: number[]): Tensor {
  const dims = syntheticDims(input);
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

/** 2^28 float32 values (1 GiB) per input: far beyond a real sample, well below what an allocation can hold. */
const MAX_SYNTHETIC_ELEMENTS = 2 ** 28;

function randomDataset(inputs: TensorInfo[], seed: number): Dataset {
  for (const input of inputs) {
    // Token ids, lengths, sample rates and masks mean something: random values would be nonsense.
    if (!['float32', 'float16', 'float64'].includes(input.dtype)) {
      throw errDatasetInvalid(`random:${seed}`, `input "${input.name}" is ${input.dtype}: random data can only stand in for float inputs`, 'Pass real data with --data (a .npz keyed by input name for multi-input models).');
    }
  }
  const shapes = inputs.map((i) => syntheticDims(i));
  // A declared dim can be absurd (2^40 in a damaged file): refuse it before allocating, by name.
  shapes.forEach((dims, k) => {
    if (elementCount(dims) > MAX_SYNTHETIC_ELEMENTS) {
      throw errDatasetInvalid(`random:${seed}`, `input "${inputs[k].name}" of shape [${dims.join(',')}] holds ${elementCount(dims)} values per sample, more than random data makes (${MAX_SYNTHETIC_ELEMENTS})`, 'Check the model\'s input shape (qforge inspect), or fix it with --input-shape.');
    }
  });
  const description: DatasetDescription = { kind: 'random', source: `random:${seed}`, synthetic: true, labeled: false };
  return {
    description,
    async *samples({ limit = 32, offset = 0 } = {}) {
      for (let i = offset; i < offset + limit; i++) {
        const rnd = mulberry32(seed * 100003 + i);
        const sample: Sample = { id: `random-${i}`, inputs: {} };
        for (const [k, input] of inputs.entries()) {
          const dims = shapes[k];
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

/** mnist (41 MB) and sharp (native) are optional peers of core, so a plugin author does not pay for them. */
function loadOptional<T>(pkg: string, feature: string): T {
  try {
    return require(pkg) as T;
  } catch (e) {
    throw errDependencyMissing(pkg, feature, e);
  }
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
      const m = loadOptional<MnistModule>('mnist', 'the mnist: dataset');
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

/** How one array of a one-input .npy dataset splits into samples (see docs/datasets.md). */
function npySampleLayout(input: TensorInfo, arrDims: number[], file: string): { count: number; dims: number[] } {
  const r = input.shape.length;
  let count: number;
  let dims: number[];
  if (arrDims.length === r && r >= 2) {
    // A batch along axis 0, cut into the batch size the model fixes (1 when symbolic).
    const b = fixedDim(input.shape[0]) ?? 1;
    if (arrDims[0] % b !== 0) throw errInputShape(input.name, input.shape, arrDims, { path: file }, { message: `input "${input.name}" fixes its batch to ${b} but ${file} holds ${arrDims[0]} rows along axis 0` });
    count = arrDims[0] / b;
    dims = [b, ...arrDims.slice(1)];
  } else if (arrDims.length === r) {
    count = 1;
    dims = arrDims;
  } else if (arrDims.length === r + 1) {
    count = arrDims[0];
    dims = arrDims.slice(1);
  } else {
    throw errInputShape(input.name, input.shape, arrDims, { path: file }, {
      message: `${file} has shape [${arrDims.join(',')}] (rank ${arrDims.length}) but input "${input.name}" is [${input.shape.map((d) => d ?? '?').join(',')}] (rank ${r})`,
      hint: `Save an array of rank ${r} (a batch along axis 0) or rank ${r + 1} (samples along a new leading axis); docs/datasets.md has the rules.`,
    });
  }
  return { count, dims: fillFromData(input, dims, { path: file }) };
}

function npyDataset(source: string, files: string[], inputs: TensorInfo[]): Dataset {
  if (inputs.length !== 1) {
    throw errDatasetInvalid(source, `.npy data feeds one input; the model has ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`, 'Use .npz files whose keys are the input names (one sample per file, or one .npz with a leading sample axis); docs/datasets.md.');
  }
  const input = inputs[0];
  const arrays = files.map((f) => {
    const file = new NpyFile(f);
    return { file, ...npySampleLayout(input, file.header.shape, f) };
  });
  const description: DatasetDescription = { kind: 'npy', source, count: arrays.reduce((a, x) => a + x.count, 0), synthetic: false, labeled: false };
  return {
    description,
    async *samples({ limit = Infinity, offset = 0 } = {}) {
      let index = 0;
      let yielded = 0;
      for (const { file, count, dims } of arrays) {
        const per = elementCount(dims);
        for (let k = 0; k < count; k++, index++) {
          if (index < offset) continue;
          if (yielded >= limit) return;
          const id = count === 1 ? file.path : `${file.path}[${k}]`;
          const t = decodeElements(file.readRaw(k * per, per), file.header.dtype, input.dtype, dims, id);
          if (t.dtype === 'float32') checkFinite(t, id, file.path);
          yielded++;
          yield { id, inputs: { [input.name]: t } };
        }
      }
    },
  };
}

/**
 * .npz data for any number of inputs. A folder holds one sample per file, each array exactly an
 * input's shape; a single file holds one sample that way, or N samples when every array carries
 * one extra leading axis of the same length N.
 */
function npzDataset(source: string, files: string[], inputs: TensorInfo[], single: boolean): Dataset {
  const layoutOf = (file: string, entries: Map<string, NpzEntry>): { count: number; batched: boolean } => {
    const names = inputs.map((i) => i.name);
    const missing = names.filter((n) => !entries.has(n));
    const extra = [...entries.keys()].filter((k) => !names.includes(k));
    if (missing.length || extra.length) {
      throw errDatasetInvalid(file, `${missing.length ? `no array for input(s) ${missing.join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `array(s) ${extra.join(', ')} name no model input` : ''}`, `Keys must be exactly the model's input names: ${names.join(', ')} (np.savez(path, ${names.map((n) => `${n}=…`).join(', ')})).`);
    }
    const ranks = inputs.map((i) => entries.get(i.name)!.header.shape.length - i.shape.length);
    if (ranks.every((d) => d === 0)) return { count: 1, batched: false };
    const leading = inputs.map((i) => entries.get(i.name)!.header.shape[0]);
    if (single && ranks.every((d) => d === 1) && leading.every((n) => n === leading[0])) return { count: leading[0], batched: true };
    const bad = inputs.find((i, k) => ranks[k] !== 0)!;
    throw errInputShape(bad.name, bad.shape, entries.get(bad.name)!.header.shape, { path: file }, {
      message: `${file}: array "${bad.name}" has shape [${entries.get(bad.name)!.header.shape.join(',')}] for input [${bad.shape.map((d) => d ?? '?').join(',')}]`,
      hint: single
        ? 'Every array must have its input\'s rank (one sample), or every array one extra leading axis of the same length N (N samples).'
        : 'In a folder of .npz files each file is one sample: every array has exactly its input\'s rank.',
    });
  };
  const description: DatasetDescription = { kind: 'npz', source, synthetic: false, labeled: false };
  // A single file is read once, here, and its arrays serve every pass (calibration, verification…).
  const singleEntries = single ? readNpz(files[0]) : undefined;
  description.count = singleEntries ? layoutOf(files[0], singleEntries).count : files.length;
  return {
    description,
    async *samples({ limit = Infinity, offset = 0 } = {}) {
      let index = 0;
      let yielded = 0;
      for (const file of files) {
        if (!single && index < offset) {
          index++;
          continue;
        }
        const entries = singleEntries ?? readNpz(file);
        const { count, batched } = layoutOf(file, entries);
        for (let k = 0; k < count; k++, index++) {
          if (index < offset) continue;
          if (yielded >= limit) return;
          const id = batched ? `${file}[${k}]` : file;
          const sample: Sample = { id, inputs: {} };
          for (const input of inputs) {
            const { header, raw } = entries.get(input.name)!;
            const dims = fillFromData(input, batched ? header.shape.slice(1) : header.shape, { path: file });
            const per = elementCount(dims) * header.bytesPerElement;
            const t = decodeElements(Buffer.from(raw.subarray(k * per, (k + 1) * per)), header.dtype, input.dtype, dims, `${id}:${input.name}`);
            if (t.dtype === 'float32') checkFinite(t, `${id}:${input.name}`, file);
            sample.inputs[input.name] = t;
          }
          yielded++;
          yield sample;
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
  const batch = fixedDim(input.shape[0]) ?? 1;
  if (batch !== 1) throw errDatasetInvalid(source, `input "${input.name}" fixes its batch to ${batch}; an image is one sample`, 'Use .npy batches for models with a fixed batch larger than 1.');
  // The data's own dims: the image size fills symbolic height/width (never 1).
  const dims = fillFromData(input, pre.layout === 'NCHW' ? [1, pre.channels, pre.height, pre.width] : [1, pre.height, pre.width, pre.channels], { path: source });
  const description: DatasetDescription = { kind: labeled ? 'labeled-images' : 'images', source, count: files.length, synthetic: false, labeled, preprocessing: pre };
  if (labeled) description.classes = classes;
  return {
    description,
    async *samples({ limit = Infinity, offset = 0 } = {}) {
      const sharp = loadOptional<typeof import('sharp')>('sharp', 'reading images');
      for (let i = offset; i < Math.min(files.length, offset + limit); i++) {
        const { file, label } = files[i];
        let raw: Buffer;
        let size: { width: number; height: number };
        try {
          // `pad` resizes to fit inside (aspect kept) and pads after normalization, below.
          let img = sharp(file).resize(pre.width, pre.height, { fit: pre.fit === 'pad' ? 'inside' : pre.fit });
          img = pre.channels === 1 ? img.grayscale() : img.removeAlpha().toColourspace('srgb');
          const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
          raw = data;
          size = { width: info.width, height: info.height };
        } catch (e) {
          throw errDatasetInvalid(file, `cannot decode image (${(e as Error).message})`, 'Remove or re-encode the file.');
        }
        const data = imageToTensorData(raw, pre, size);
        yield { id: file, label, inputs: { [input.name]: { dtype: 'float32', dims, data } } };
      }
    },
  };
}

/**
 * HWC bytes → float tensor data in the model's layout, scaled to 0..1 then normalized. A source
 * smaller than the target (`pad`) sits at the top left; the rest stays 0 after normalization.
 */
export function imageToTensorData(raw: Uint8Array, pre: ImagePreprocessing, source: { width: number; height: number } = pre): Float32Array {
  const { width, height, channels, layout, mean, std } = pre;
  const out = new Float32Array(width * height * channels);
  const plane = width * height;
  for (let y = 0; y < source.height; y++) {
    for (let x = 0; x < source.width; x++) {
      const p = y * width + x;
      const q = y * source.width + x;
      for (let c = 0; c < channels; c++) {
        const v = (raw[q * channels + c] / 255 - mean[c]) / std[c];
        out[layout === 'NCHW' ? c * plane + p : p * channels + c] = v;
      }
    }
  }
  return out;
}
