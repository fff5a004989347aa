// Framework-free affine quantization: ranges to scale/zero-point, per tensor or per axis.
import type { QuantType } from './contract';
import { errInvalidOption } from './errors';

export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

export interface QuantRangeOptions {
  type: QuantType;
  symmetric?: boolean;
  /** Use one bit less (7-bit for 8-bit types), for kernels that saturate in int16. */
  reduceRange?: boolean;
}

const BITS: Record<QuantType, { bits: number; signed: boolean }> = {
  int4: { bits: 4, signed: true },
  uint4: { bits: 4, signed: false },
  int8: { bits: 8, signed: true },
  uint8: { bits: 8, signed: false },
  int16: { bits: 16, signed: true },
  uint16: { bits: 16, signed: false },
};

/** Integer range [qmin, qmax] of a type. Symmetric signed ranges drop the most negative value. */
export function quantRange({ type, symmetric = false, reduceRange = false }: QuantRangeOptions): { qmin: number; qmax: number } {
  const spec = BITS[type];
  if (!spec) throw errInvalidOption('type', `unknown quantization type "${type}"`);
  const bits = reduceRange ? spec.bits - 1 : spec.bits;
  if (spec.signed) {
    const qmax = 2 ** (bits - 1) - 1;
    return { qmin: symmetric ? -qmax : -qmax - 1, qmax };
  }
  return { qmin: 0, qmax: 2 ** bits - 1 };
}

/**
 * Scale and zero point that map the real range [min, max] onto the type's integers.
 * The range is widened to include 0 so that zero (padding, ReLU) is exact.
 */
export function scaleFromRange(min: number, max: number, opts: QuantRangeOptions): QuantParams {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw errInvalidOption('range', `range [${min}, ${max}] is not finite`);
  if (min > max) throw errInvalidOption('range', `range min ${min} is above max ${max}`);
  const { qmin, qmax } = quantRange(opts);
  let lo = Math.min(min, 0);
  let hi = Math.max(max, 0);
  if (opts.symmetric) {
    const a = Math.max(Math.abs(lo), Math.abs(hi));
    lo = -a;
    hi = a;
  }
  if (hi === lo) return { scale: 1, zeroPoint: opts.symmetric && !BITS[opts.type].signed ? Math.ceil((qmin + qmax) / 2) : clampInt(0, qmin, qmax) };
  const scale = (hi - lo) / (qmax - qmin);
  const zeroPoint = opts.symmetric && BITS[opts.type].signed ? 0 : clampInt(Math.round(qmin - lo / scale), qmin, qmax);
  return { scale, zeroPoint };
}

function clampInt(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

export type QuantizedArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array;

function allocFor(type: QuantType, n: number): QuantizedArray {
  switch (type) {
    case 'int8':
    case 'int4':
      return new Int8Array(n);
    case 'uint8':
    case 'uint4':
      return new Uint8Array(n);
    case 'int16':
      return new Int16Array(n);
    case 'uint16':
      return new Uint16Array(n);
  }
}

/** Quantizes with one scale/zero-point (round half to even, as ONNX QuantizeLinear does). */
export function quantizeTensor(data: ArrayLike<number>, params: QuantParams, opts: QuantRangeOptions): QuantizedArray {
  const { qmin, qmax } = quantRange(opts);
  const out = allocFor(opts.type, data.length);
  const inv = 1 / params.scale;
  for (let i = 0; i < data.length; i++) out[i] = clampInt(roundHalfEven(data[i] * inv) + params.zeroPoint, qmin, qmax);
  return out;
}

export function dequantizeTensor(q: ArrayLike<number>, params: QuantParams): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = (q[i] - params.zeroPoint) * params.scale;
  return out;
}

export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Per-channel ranges along `axis` of a row-major tensor. */
export function rangesPerAxis(data: ArrayLike<number>, dims: readonly number[], axis: number): { min: Float32Array; max: Float32Array } {
  const channels = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const min = new Float32Array(channels).fill(Infinity);
  const max = new Float32Array(channels).fill(-Infinity);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const v = data[i];
    if (v < min[c]) min[c] = v;
    if (v > max[c]) max[c] = v;
  }
  return { min, max };
}

export interface PerAxisQuantized {
  values: QuantizedArray;
  scales: Float32Array;
  zeroPoints: Int32Array;
}

/** Quantizes a weight tensor with one scale per slice along `axis` (per-channel). */
export function quantizePerAxis(data: ArrayLike<number>, dims: readonly number[], axis: number, opts: QuantRangeOptions): PerAxisQuantized {
  const { min, max } = rangesPerAxis(data, dims, axis);
  const channels = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const { qmin, qmax } = quantRange(opts);
  const scales = new Float32Array(channels);
  const zeroPoints = new Int32Array(channels);
  for (let c = 0; c < channels; c++) {
    const p = scaleFromRange(min[c], max[c], opts);
    scales[c] = p.scale;
    zeroPoints[c] = p.zeroPoint;
  }
  const values = allocFor(opts.type, data.length);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % channels;
    values[i] = clampInt(roundHalfEven(data[i] / scales[c]) + zeroPoints[c], qmin, qmax);
  }
  return { values, scales, zeroPoints };
}

/**
 * Weight quantization in one call: per slice along `axis` when given, else one scale for the
 * whole tensor. Scales and zero points come back as arrays either way.
 */
export function quantizeWeights(data: ArrayLike<number>, dims: readonly number[], axis: number | undefined, opts: QuantRangeOptions): PerAxisQuantized {
  if (axis !== undefined) return quantizePerAxis(data, dims, axis, opts);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    if (data[i] < lo) lo = data[i];
    if (data[i] > hi) hi = data[i];
  }
  const p = scaleFromRange(data.length ? lo : 0, data.length ? hi : 0, opts);
  return { values: quantizeTensor(data, p, opts), scales: Float32Array.from([p.scale]), zeroPoints: Int32Array.from([p.zeroPoint]) };
}

/** Quantizes along `axis` with given per-slice scales and zero points. */
export function quantizeWithScales(data: ArrayLike<number>, dims: readonly number[], axis: number, scales: ArrayLike<number>, zeroPoints: ArrayLike<number>, opts: QuantRangeOptions): QuantizedArray {
  const channels = dims[axis];
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const { qmin, qmax } = quantRange(opts);
  const values = allocFor(opts.type, data.length);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % channels;
    values[i] = clampInt(roundHalfEven(data[i] / scales[c]) + zeroPoints[c], qmin, qmax);
  }
  return values;
}

/**
 * Raises weight scales where the int32 bias (scale = s_in × s_w) would overflow: channels with
 * near-zero weights but a sizeable bias (common after BatchNorm folding). Returns the indices changed.
 */
export function widenScalesForBias(weightScales: Float32Array, bias: ArrayLike<number>, inputScale: number, headroom = 2 ** 30): number[] {
  const changed: number[] = [];
  for (let c = 0; c < weightScales.length; c++) {
    const needed = Math.abs(bias[weightScales.length === 1 ? 0 : c]) / (inputScale * headroom);
    if (needed > weightScales[c]) {
      weightScales[c] = needed;
      changed.push(c);
    }
  }
  return changed;
}

/** int32 bias with scale = inputScale × weightScale and zero point 0 (ONNX and TFLite both). */
export function quantizeBias(bias: ArrayLike<number>, inputScale: number, weightScales: ArrayLike<number>): { values: Int32Array; scales: Float32Array } {
  const values = new Int32Array(bias.length);
  const scales = new Float32Array(bias.length);
  for (let i = 0; i < bias.length; i++) {
    const s = inputScale * (weightScales.length === 1 ? weightScales[0] : weightScales[i]);
    scales[i] = s;
    values[i] = clampInt(roundHalfEven(bias[i] / s), -2147483648, 2147483647);
  }
  return { values, scales };
}
