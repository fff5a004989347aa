// The framework-free tensor qforge passes between datasets, backends and metrics.

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
