// Streaming statistics for calibration: memory stays constant however many samples flow through.
import type { CalibrationMethod, QuantType } from './contract';
import { quantRange, scaleFromRange } from './quant-math';

/** Running min/max; with `movingAverage` c, each sample's extremes move the range by a factor c. */
export class RunningMinMax {
  min = Infinity;
  max = -Infinity;
  count = 0;
  constructor(readonly movingAverage?: number) {}

  update(data: ArrayLike<number>): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (data.length === 0) return;
    this.updateRange(lo, hi);
  }

  /** One sample's extremes, when a runtime computed them (no data crosses into JavaScript). */
  updateRange(lo: number, hi: number): void {
    const c = this.movingAverage;
    if (c === undefined || this.count === 0) {
      this.min = Math.min(this.min, lo);
      this.max = Math.max(this.max, hi);
    } else {
      this.min = this.min + c * (lo - this.min);
      this.max = this.max + c * (hi - this.max);
    }
    this.count++;
  }
}

export interface HistogramJson {
  /** The histogram covers [-limit, limit]; limit is a power of two so histograms merge exactly. */
  limit: number;
  bins: number[];
}

/**
 * A symmetric histogram over [-limit, limit] with a fixed bin count. When data exceeds the limit,
 * the limit doubles and neighbouring bins merge: no sample is kept, and two histograms of the
 * same bin count always merge exactly.
 */
export class Histogram {
  limit: number;
  readonly counts: Float64Array;
  total = 0;

  constructor(readonly binCount = 4096, limit = 2 ** -20) {
    if (binCount % 2 !== 0 || binCount < 16) throw new RangeError('binCount must be even and at least 16');
    this.limit = limit;
    this.counts = new Float64Array(binCount);
  }

  static fromJSON(json: HistogramJson): Histogram {
    const h = new Histogram(json.bins.length, json.limit);
    h.counts.set(json.bins);
    h.total = json.bins.reduce((a, b) => a + b, 0);
    return h;
  }

  toJSON(): HistogramJson {
    return { limit: this.limit, bins: Array.from(this.counts) };
  }

  get binWidth(): number {
    return (2 * this.limit) / this.binCount;
  }

  private growTo(absMax: number): void {
    if (this.total === 0 && absMax > this.limit) this.limit = 2 ** Math.ceil(Math.log2(absMax));
    while (absMax > this.limit) {
      // Merge pairs of bins outward-in so the new, twice-as-wide bins stay centred on zero.
      const n = this.binCount;
      const half = n / 2;
      const next = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const centred = i - half; // -half .. half-1
        const target = half + Math.floor(centred / 2);
        next[target] += this.counts[i];
      }
      this.counts.set(next);
      this.limit *= 2;
    }
  }

  update(data: ArrayLike<number>): void {
    let absMax = 0;
    for (let i = 0; i < data.length; i++) {
      const a = Math.abs(data[i]);
      if (a > absMax) absMax = a;
    }
    this.growTo(absMax);
    const n = this.binCount;
    const scale = n / (2 * this.limit);
    const counts = this.counts;
    for (let i = 0; i < data.length; i++) {
      let b = Math.floor((data[i] + this.limit) * scale);
      if (b >= n) b = n - 1;
      else if (b < 0) b = 0;
      counts[b]++;
    }
    this.total += data.length;
  }

  merge(other: Histogram): void {
    if (other.binCount !== this.binCount) throw new RangeError('histograms with different bin counts do not merge');
    const o = Histogram.fromJSON(other.toJSON());
    this.growTo(o.limit);
    o.growTo(this.limit);
    for (let i = 0; i < this.binCount; i++) this.counts[i] += o.counts[i];
    this.total += o.total;
  }

  /** Value below which `q` (0..1) of the mass lies, interpolated inside the bin. */
  quantile(q: number): number {
    const target = q * this.total;
    let acc = 0;
    const w = this.binWidth;
    for (let i = 0; i < this.binCount; i++) {
      const c = this.counts[i];
      if (acc + c >= target && c > 0) return -this.limit + (i + (target - acc) / c) * w;
      acc += c;
    }
    return this.limit;
  }
}

/** Streaming statistics for one tensor: exact min/max plus a histogram when the method needs one. */
export class TensorStatistics {
  readonly minMax: RunningMinMax;
  readonly histogram?: Histogram;
  constructor(opts: { movingAverage?: number; histogramBins?: number }) {
    this.minMax = new RunningMinMax(opts.movingAverage);
    if (opts.histogramBins) this.histogram = new Histogram(opts.histogramBins);
  }
  update(data: ArrayLike<number>): void {
    this.minMax.update(data);
    this.histogram?.update(data);
  }
}

export function methodNeedsHistogram(method: CalibrationMethod): boolean {
  return method !== 'minmax';
}

export interface RangeChoiceOptions {
  method: CalibrationMethod;
  /** @defaultValue 99.999 */
  percentile?: number;
  /** @defaultValue 'uint8' */
  activationType?: QuantType;
}

/** Chooses the clipping range [lo, hi] for one tensor from its statistics. */
export function chooseRange(min: number, max: number, hist: Histogram | undefined, opts: RangeChoiceOptions): [number, number] {
  if (opts.method === 'minmax' || !hist || hist.total === 0 || min === max) return [min, max];
  switch (opts.method) {
    case 'percentile': {
      const p = (opts.percentile ?? 99.999) / 100;
      const lo = min >= 0 ? min : Math.max(min, hist.quantile(1 - p));
      const hi = max <= 0 ? max : Math.min(max, hist.quantile(p));
      return [Math.min(lo, hi), Math.max(lo, hi)];
    }
    case 'entropy':
      // A tensor that never goes negative spends all 256 levels on [0, T]; a signed one 128 per side.
      return clipToRange(min, max, entropyThreshold(hist, min, max, min >= 0 ? 256 : 128));
    case 'mse':
      return mseRange(min, max, hist, opts.activationType ?? 'uint8');
  }
}

function clipToRange(min: number, max: number, t: number): [number, number] {
  return [Math.max(min, -t), Math.min(max, t)];
}

/** |x| histogram folded from the symmetric one: bin i covers [i·w, (i+1)·w). */
function foldAbs(hist: Histogram): Float64Array {
  const half = hist.binCount / 2;
  const abs = new Float64Array(half);
  for (let i = 0; i < half; i++) abs[i] = hist.counts[half + i] + hist.counts[half - 1 - i];
  return abs;
}

/**
 * KL-divergence threshold (the TensorRT entropy calibrator) on the |x| distribution:
 * the clip point whose 128-level quantized distribution loses the least information.
 */
export function entropyThreshold(hist: Histogram, min: number, max: number, levels = 128): number {
  const abs = foldAbs(hist);
  const w = hist.binWidth;
  const absMax = Math.max(Math.abs(min), Math.abs(max));
  const used = Math.min(abs.length, Math.ceil(absMax / w));
  if (used <= levels) return absMax;
  // Coarsen so the search stays fast: at most 2048 bins of |x|.
  const factor = Math.max(1, Math.ceil(used / 2048));
  const n = Math.ceil(used / factor);
  const p0 = new Float64Array(n);
  for (let i = 0; i < used; i++) p0[Math.floor(i / factor)] += abs[i];
  // Zero is exactly representable, so the spike of exact zeros (ReLU outputs, padding) carries
  // no quantization error; left in, it dominates P and drags the threshold towards zero.
  p0[0] = 0;
  const bw = w * factor;
  let bestKl = Infinity;
  let bestI = n;
  for (let i = levels; i <= n; i++) {
    const p = p0.slice(0, i);
    let outliers = 0;
    for (let j = i; j < n; j++) outliers += p0[j];
    p[i - 1] += outliers;
    // Quantize the first i bins into `levels` buckets and expand back over P's non-empty bins.
    const q = new Float64Array(i);
    const per = i / levels;
    for (let k = 0; k < levels; k++) {
      const start = Math.floor(k * per);
      const end = k === levels - 1 ? i : Math.floor((k + 1) * per);
      let sum = 0;
      let nonzero = 0;
      // Q is built from the unclipped bins: the clipped-off mass is what makes short ranges cost.
      for (let j = start; j < end; j++) {
        sum += p0[j];
        if (p[j] > 0) nonzero++;
      }
      if (nonzero === 0) continue;
      const avg = sum / nonzero;
      for (let j = start; j < end; j++) if (p[j] > 0) q[j] = avg;
    }
    const kl = klDivergence(p, q);
    if (kl < bestKl) {
      bestKl = kl;
      bestI = i;
    }
  }
  return Math.min(absMax, (bestI + 0.5) * bw);
}

function klDivergence(p: Float64Array, q: Float64Array): number {
  let ps = 0;
  let qs = 0;
  for (let i = 0; i < p.length; i++) {
    ps += p[i];
    qs += q[i];
  }
  if (ps === 0 || qs === 0) return Infinity;
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) continue;
    const pi = p[i] / ps;
    const qi = q[i] / qs;
    kl += qi === 0 ? 1e3 * pi : pi * Math.log(pi / qi);
  }
  return kl;
}

/** The range minimising expected squared error (rounding + clipping) over the histogram. */
export function mseRange(min: number, max: number, hist: Histogram, type: QuantType, candidates = 128): [number, number] {
  const { qmin, qmax } = quantRange({ type });
  const w = hist.binWidth;
  const centres: number[] = [];
  const mass: number[] = [];
  for (let i = 0; i < hist.binCount; i++) {
    if (hist.counts[i] === 0) continue;
    centres.push(-hist.limit + (i + 0.5) * w);
    mass.push(hist.counts[i]);
  }
  let best: [number, number] = [min, max];
  let bestErr = Infinity;
  const absMax = Math.max(Math.abs(min), Math.abs(max));
  for (let k = 1; k <= candidates; k++) {
    // One clip threshold for both sides, so an outlier on one side cannot drag the other.
    const t = (absMax * k) / candidates;
    // Ranges always contain 0 (scaleFromRange widens them), so clip the zero-including range: a
    // one-signed tensor (min > 0) must not get a threshold below its own min.
    const lo = Math.max(Math.min(min, 0), -t);
    const hi = Math.min(Math.max(max, 0), t);
    const { scale, zeroPoint } = scaleFromRange(lo, hi, { type });
    let err = 0;
    for (let j = 0; j < centres.length; j++) {
      const x = centres[j];
      let q = Math.round(x / scale) + zeroPoint;
      q = q < qmin ? qmin : q > qmax ? qmax : q;
      const d = (q - zeroPoint) * scale - x;
      err += d * d * mass[j];
    }
    if (err < bestErr) {
      bestErr = err;
      best = [lo, hi];
    }
  }
  return best;
}

/** Equal-width histogram of a whole array (for weights; activations stream through `Histogram`). */
export function valueHistogram(tensor: string, data: ArrayLike<number>, bins = 64): { tensor: string; min: number; max: number; bins: number[] } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    if (data[i] < min) min = data[i];
    if (data[i] > max) max = data[i];
  }
  const counts = new Array<number>(bins).fill(0);
  const w = (max - min) / bins || 1;
  for (let i = 0; i < data.length; i++) counts[Math.min(bins - 1, Math.floor((data[i] - min) / w))]++;
  return { tensor, min, max, bins: counts };
}
