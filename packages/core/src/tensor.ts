// The framework-free tensor qforge passes between datasets, backends and metrics.
import { errInvalidOption } from './errors';

export type TensorDType = 'float32' | 'int32' | 'int64' | 'uint8' | 'int8' | 'bool';

/** A dense tensor in row-major order. Dims are concrete; symbolic dims live in `TensorInfo`. */
export interface Tensor {
  dtype: TensorDType;
  dims: number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;
}

/** A model input or output as the model declares it; unknown or symbolic dims are strings or null. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: (number | string | null)[];
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function float32Tensor(dims: number[], data?: Float32Array): Tensor {
  const n = elementCount(dims);
  if (data && data.length !== n) throw new RangeError(`data has ${data.length} elements, dims [${dims.join(',')}] need ${n}`);
  return { dtype: 'float32', dims, data: data ?? new Float32Array(n) };
}

/** Returns the index of the first non-finite value, or -1. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

/** Resolves a declared shape to a concrete one, taking unknown dims (batch) as `fill`. */
export function concreteShape(shape: readonly (number | string | null)[], fill = 1): number[] {
  return shape.map((d) => (typeof d === 'number' && d > 0 ? d : fill));
}

/**
 * Parses `--input-shape` values: `1,3,640,640` (the only input) or `name:1,3,640,640`.
 * Returns the inputs with those shapes fixed, for models whose dims are symbolic.
 */
export function withInputShapes(inputs: TensorInfo[], specs: string[]): TensorInfo[] {
  if (!specs.length) return inputs;
  const shapes = new Map<string, number[]>();
  for (const spec of specs) {
    const m = /^(?:(.+):)?(\d+(?:,\d+)*)$/.exec(spec.trim());
    if (!m) throw errInvalidOption('--input-shape', `"${spec}" is not NAME:D0,D1,… or D0,D1,…`, 'Example: --input-shape x:1,3,640,640');
    const name = m[1] ?? (inputs.length === 1 ? inputs[0].name : undefined);
    if (!name) throw errInvalidOption('--input-shape', `the model has ${inputs.length} inputs; name the input as NAME:D0,D1,…`);
    if (!inputs.some((i) => i.name === name)) throw errInvalidOption('--input-shape', `the model has no input "${name}" (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    shapes.set(name, m[2].split(',').map(Number));
  }
  return inputs.map((i) => {
    const s = shapes.get(i.name);
    if (!s) return i;
    if (s.length !== i.shape.length) throw errInvalidOption('--input-shape', `input "${i.name}" has rank ${i.shape.length}, got [${s.join(',')}]`);
    i.shape.forEach((d, k) => {
      if (typeof d === 'number' && d > 0 && d !== s[k]) throw errInvalidOption('--input-shape', `input "${i.name}" fixes dim ${k} to ${d}, got ${s[k]}`);
    });
    return { ...i, shape: s };
  });
}
