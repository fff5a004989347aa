// Latency statistics and how two models' latencies become one honest ratio: medians, paired runs, a bootstrap interval.
import { mulberry32 } from './datasets/open';

export interface LatencyStats {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  std: number;
  /** The raw samples in milliseconds, in the order they were measured (for plots). */
  samples: number[];
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function summarizeLatencies(samplesMs: readonly number[]): LatencyStats {
  if (samplesMs.length === 0) throw new RangeError('no latency samples');
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mean = samplesMs.reduce((a, b) => a + b, 0) / samplesMs.length;
  const variance = samplesMs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, samplesMs.length - 1);
  return {
    count: samplesMs.length,
    mean,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    std: Math.sqrt(variance),
    samples: [...samplesMs],
  };
}

/** Items per second at the mean latency. */
export function throughputPerSec(stats: LatencyStats, batch = 1): number {
  return (1000 / stats.mean) * batch;
}

/**
 * The headline ratio of a two-model benchmark. `median` is median(compare) / median(primary): above
 * 1 means `primary` is faster. [low, high] is a percentile bootstrap interval over the paired runs
 * (run i of one model with run i of the other, measured back to back), so drift in machine load
 * that hits both models alike widens the interval less than it would unpaired.
 */
export interface SpeedupEstimate {
  median: number;
  low: number;
  high: number;
  /** @defaultValue 0.95 */
  confidence: number;
  method: 'paired-bootstrap-median-ratio';
  /** Paired runs the ratio and the interval were computed from. */
  pairs: number;
  resamples: number;
  /** Seed of the resampling, so the same latencies always give the same interval. */
  seed: number;
}

/** How long and how often a benchmark measures each model. */
export interface MeasurementPlan {
  warmup: number;
  /** Timed runs per model at least. */
  minRuns: number;
  /** Timed latency per model at least, in ms; 0 means exactly `minRuns` runs. */
  minTimeMs: number;
  /** Timed runs per model at most, whatever `minTimeMs` asks. */
  maxRuns: number;
}

/** Enough for a stable median on a sub-millisecond model; 2 s of measured latency per model. */
export const DEFAULT_BENCH_MIN_TIME_MS = 2000;
/** Caps the runs of very fast models (0.05 ms × 5000 is a quarter second), keeping the bootstrap cheap. */
export const DEFAULT_BENCH_MAX_RUNS = 5000;

export function measurementPlan(options: { warmup: number; runs: number; minTimeMs?: number; maxRuns?: number }): MeasurementPlan {
  const minRuns = Math.max(1, Math.floor(options.runs));
  return { warmup: Math.max(0, Math.floor(options.warmup)), minRuns, minTimeMs: Math.max(0, options.minTimeMs ?? 0), maxRuns: Math.max(minRuns, Math.floor(options.maxRuns ?? DEFAULT_BENCH_MAX_RUNS)) };
}

/** One model under measurement: `run` performs one inference and resolves when its result exists. */
export interface MeasuredModel {
  run(): unknown | Promise<unknown>;
}

/**
 * Runs the models alternately (A B, B A, A B, …) so each sees the same machine state on average,
 * until every model has `minRuns` runs and `minTimeMs` of measured latency, or `maxRuns`.
 * Returns one latency series per model, in ms, index-aligned: sample i of each is pair i.
 */
export async function measureAlternately(
  models: readonly MeasuredModel[],
  plan: MeasurementPlan,
  hooks: { beforeRun?: () => void; afterRun?: (done: number, expected: number) => void; now?: () => number } = {},
): Promise<number[][]> {
  const now = hooks.now ?? (() => performance.now());
  for (let i = 0; i < plan.warmup; i++) for (const m of models) await m.run();
  const samples = models.map(() => [] as number[]);
  const totals = models.map(() => 0);
  for (let i = 0; i < plan.maxRuns; i++) {
    if (i >= plan.minRuns && totals.every((t) => t >= plan.minTimeMs)) break;
    hooks.beforeRun?.();
    const order = i % 2 === 0 ? models.map((_, k) => k) : models.map((_, k) => models.length - 1 - k);
    for (const k of order) {
      const t0 = now();
      await models[k].run();
      const dt = now() - t0;
      samples[k].push(dt);
      totals[k] += dt;
    }
    // Progress total: what the time budget implies at the pace so far.
    const slowest = Math.min(...totals.map((t) => t / (i + 1)));
    const expected = Math.min(plan.maxRuns, Math.max(plan.minRuns, plan.minTimeMs > 0 && slowest > 0 ? Math.ceil(plan.minTimeMs / slowest) : plan.minRuns));
    hooks.afterRun?.(i + 1, Math.max(expected, i + 1));
  }
  return samples;
}

/** Median by selection (Hoare's quickselect) in place: O(n), where a sort per resample would dominate. */
function medianInPlace(a: Float64Array): number {
  const n = a.length;
  const kth = (k: number): number => {
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const pivot = a[(lo + hi) >>> 1];
      let i = lo;
      let j = hi;
      while (i <= j) {
        while (a[i] < pivot) i++;
        while (a[j] > pivot) j--;
        if (i <= j) {
          const t = a[i];
          a[i] = a[j];
          a[j] = t;
          i++;
          j--;
        }
      }
      if (k <= j) hi = j;
      else if (k >= i) lo = i;
      else return a[k];
    }
    return a[k];
  };
  if (n % 2 === 1) return kth((n - 1) / 2);
  const upper = kth(n / 2);
  // After selecting n/2, everything left of it is ≤ it: the lower middle is their maximum.
  let lower = -Infinity;
  for (let i = 0; i < n / 2; i++) if (a[i] > lower) lower = a[i];
  return (lower + upper) / 2;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  return medianInPlace(Float64Array.from(values));
}

/**
 * The speedup of `primary` over `compare` (compare latency / primary latency) from medians, with a
 * seeded paired bootstrap interval. Both series must come from the same alternated runs.
 */
export function estimateSpeedup(primaryMs: readonly number[], compareMs: readonly number[], opts: { resamples?: number; seed?: number; confidence?: number } = {}): SpeedupEstimate {
  const n = Math.min(primaryMs.length, compareMs.length);
  if (n === 0) throw new RangeError('no paired latency samples');
  const resamples = opts.resamples ?? 2000;
  const seed = opts.seed ?? 12;
  const confidence = opts.confidence ?? 0.95;
  const p = Float64Array.from(primaryMs.slice(0, n));
  const c = Float64Array.from(compareMs.slice(0, n));
  const ratio = median(Array.from(c)) / median(Array.from(p));
  const rand = mulberry32(seed);
  const bp = new Float64Array(n);
  const bc = new Float64Array(n);
  const ratios = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) {
      const k = Math.floor(rand() * n);
      bp[i] = p[k];
      bc[i] = c[k];
    }
    ratios[r] = medianInPlace(bc) / medianInPlace(bp);
  }
  ratios.sort();
  const tail = (1 - confidence) / 2;
  const at = (q: number) => ratios[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))];
  return { median: ratio, low: Math.min(ratio, at(tail)), high: Math.max(ratio, at(1 - tail)), confidence, method: 'paired-bootstrap-median-ratio', pairs: n, resamples, seed };
}

/** `1.02× (95% CI 0.99–1.05)`: how every surface prints a speedup. */
export function formatSpeedup(s: SpeedupEstimate | number | undefined): string {
  if (s === undefined) return '—';
  if (typeof s === 'number') return `${s.toFixed(2)}×`;
  return `${s.median.toFixed(2)}× (${Math.round(s.confidence * 100)}% CI ${s.low.toFixed(2)}–${s.high.toFixed(2)})`;
}
