// Your own data from Node: the equivalent of ONNX Runtime's CalibrationDataReader and TFLite's
// representative_dataset, as a qforge Dataset.
import { errDatasetInvalid } from '../errors';
import type { Tensor, TensorInfo } from '../tensor';
import type { Dataset, DatasetDescription, Sample } from './dataset';
import { conformDataset } from './shapes';

/** One sample from user code: the model's inputs by name, and optionally a class label. */
export interface UserSample {
  inputs: Record<string, Tensor>;
  label?: number;
  /** A string label (the text a line shows), for sequence outputs decoded with CTC. */
  text?: string;
  id?: string;
}

export type UserSampleSource = AsyncIterable<Record<string, Tensor> | UserSample> | Iterable<Record<string, Tensor> | UserSample>;

export interface IterableDatasetOptions {
  /** How reports name the data. @defaultValue 'custom' */
  name?: string;
  /** Samples available, when known (for progress bars). */
  count?: number;
  /** Class names when samples carry labels. */
  classes?: string[];
  /** The model inputs: when given, every sample is checked against them and shapes are recorded. */
  inputs?: TensorInfo[];
}

function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'dims' in v && 'data' in v && 'dtype' in v;
}

/**
 * A Dataset over samples your code produces. Pass a function that returns a fresh iterable
 * (calibration, verification and corrections each read the data once); a plain iterable can be
 * read only once, and a second pass fails with E_DATASET_INVALID instead of seeing no data.
 */
export function datasetFromIterable(source: (() => UserSampleSource) | UserSampleSource, options: IterableDatasetOptions = {}): Dataset {
  const name = options.name ?? 'custom';
  let used = false;
  const open = (): UserSampleSource => {
    if (typeof source === 'function') return source();
    if (used) throw errDatasetInvalid(name, 'a plain iterable can be read only once, and this dataset is read again', 'Pass a function that returns a fresh iterable: datasetFromIterable(() => mySamples()).');
    used = true;
    return source;
  };
  const description: DatasetDescription = { kind: 'custom', source: name, synthetic: false, labeled: Boolean(options.classes?.length), ...(options.count !== undefined ? { count: options.count } : {}) };
  if (options.classes?.length) description.classes = options.classes;
  const dataset: Dataset = {
    description,
    async *samples({ limit = Infinity, offset = 0 } = {}) {
      let index = 0;
      let yielded = 0;
      for await (const item of open()) {
        if (yielded >= limit) return;
        const i = index++;
        if (i < offset) continue;
        // A model input may itself be called "inputs": only a non-tensor `inputs` marks a UserSample.
        const sample: Sample = 'inputs' in item && !isTensor((item as UserSample).inputs)
          ? { id: (item as UserSample).id ?? `${name}[${i}]`, inputs: (item as UserSample).inputs, label: (item as UserSample).label, ...((item as UserSample).text !== undefined ? { text: (item as UserSample).text } : {}) }
          : { id: `${name}[${i}]`, inputs: item as Record<string, Tensor> };
        if (sample.label !== undefined) description.labeled = true;
        yielded++;
        yield sample;
      }
    },
  };
  return options.inputs ? conformDataset(dataset, options.inputs) : dataset;
}
