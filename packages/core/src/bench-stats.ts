// Latency statistics: warm-up excluded by the caller, nearest-rank percentiles.

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
