// How data fills a model's symbolic dimensions. The data says its shape; qforge never invents one.
import { errDatasetInvalid, errInputShape } from '../errors';
import type { Tensor, TensorInfo } from '../tensor';
import type { Dataset, Sample } from './dataset';

export type DeclaredDim = number | string | null;

/** A declared dimension's fixed size, or undefined when it is symbolic or unknown. */
export function fixedDim(d: DeclaredDim): number | undefined {
  return typeof d === 'number' && d > 0 ? d : undefined;
}

export function isSymbolic(shape: readonly DeclaredDim[]): boolean {
  return shape.some((d) => fixedDim(d) === undefined);
}

/** `x:1,3,48,320` — the flag value that fixes an input, with symbolic dims shown as `?`. */
function shapeFlagExample(input: TensorInfo): string {
  return `${input.name}:${input.shape.map((d, k) => fixedDim(d) ?? (k === 0 && input.shape.length >= 2 ? 1 : `<${d || '?'}>`)).join(',')}`;
}

/**
 * The dims of one sample whose data has `dataDims`: the rank must be the input's, fixed dims must
 * match, and symbolic dims take the data's sizes.
 */
export function fillFromData(input: TensorInfo, dataDims: readonly number[], where: Record<string, string> = {}): number[] {
  const ok = dataDims.length === input.shape.length && input.shape.every((d, k) => fixedDim(d) === undefined || fixedDim(d) === dataDims[k]);
  if (!ok) throw errInputShape(input.name, input.shape, dataDims, where);
  return [...dataDims];
}

/**
 * Dims for data qforge makes itself (`random`, a benchmark without data). The leading dimension of
 * an input of rank ≥ 2 is its batch and becomes 1 (qforge feeds one sample at a time); any other
 * symbolic dimension is an error that names the `--input-shape` to pass.
 */
export function syntheticDims(input: TensorInfo): number[] {
  return input.shape.map((d, k) => {
    const f = fixedDim(d);
    if (f !== undefined) return f;
    if (k === 0 && input.shape.length >= 2) return 1;
    throw errInputShape(input.name, input.shape, [], { dimension: k }, {
      message: `input "${input.name}" has symbolic dimension ${k} (${d || 'unknown'}) in [${input.shape.map((x) => x ?? '?').join(',')}]: generated data cannot know its size`,
      hint: `Pass real data with --data, or fix the shape: --input-shape ${shapeFlagExample(input)} (with the sizes you run the model at).`,
    });
  });
}

function dimsKey(dims: readonly number[]): string {
  return dims.length ? dims.join('×') : 'scalar';
}

/** Up to this many distinct shapes per input are listed in reports; the rest are counted. */
const MAX_SHAPES = 8;

/**
 * Wraps a dataset so that every sample is checked against the model's inputs (every input present,
 * the declared dtype family, rank and fixed dims) and the concrete shapes used are recorded in
 * `description.inputShapes` as they stream — what calibration tables, reports and summaries show.
 */
export function conformDataset(dataset: Dataset, inputs: TensorInfo[]): Dataset {
  const description = dataset.description;
  const seen = new Map<string, Map<string, number>>();
  const record = (s: Sample) => {
    const shapes: Record<string, string[]> = (description.inputShapes ??= {});
    for (const input of inputs) {
      const t = s.inputs[input.name];
      const key = dimsKey(t.dims);
      const m = seen.get(input.name) ?? new Map<string, number>();
      seen.set(input.name, m);
      if (!m.has(key)) {
        m.set(key, 1);
        const list = (shapes[input.name] ??= []);
        if (list.length < MAX_SHAPES) list.push(key);
        else if (list.length === MAX_SHAPES) list.push('…');
      }
    }
  };
  return {
    description,
    async *samples(options) {
      for await (const s of dataset.samples(options)) {
        checkSample(s, inputs, description.source);
        record(s);
        yield s;
      }
    },
  };
}

const FAMILY: Record<string, string> = { float32: 'float', float16: 'float', float64: 'float', int64: 'int64', int32: 'int32', uint8: 'uint8', int8: 'int8', bool: 'bool' };

/** Checks one sample against the model's declared inputs. */
export function checkSample(s: Sample, inputs: TensorInfo[], source: string): void {
  for (const input of inputs) {
    const t: Tensor | undefined = s.inputs[input.name];
    if (!t) throw errDatasetInvalid(source, `sample ${s.id} has no tensor for input "${input.name}" (it has: ${Object.keys(s.inputs).join(', ') || 'none'})`, 'Every model input needs a value in every sample; `qforge inspect <model>` lists them.');
    const want = FAMILY[input.dtype];
    if (want && FAMILY[t.dtype] !== want) throw errDatasetInvalid(source, `sample ${s.id}: input "${input.name}" is ${input.dtype} but the data is ${t.dtype}`);
    fillFromData(input, t.dims, { sample: s.id });
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw errInputShape(input.name, input.shape, t.dims, { sample: s.id, reason: `${t.data.length} values for ${n} elements` });
  }
}
