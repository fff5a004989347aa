import { estimateSpeedup, formatSpeedup, measureAlternately, measurementPlan, median } from './bench-stats';

/** Latencies like a sub-millisecond model's: a floor, jitter, and rare long stalls (GC, scheduler). */
function fakeLatencies(n: number, seed: number, scale = 1): number[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  return Array.from({ length: n }, () => scale * (0.2 + 0.03 * -Math.log(1 - rand()) + (rand() < 0.01 ? 5 * rand() : 0)));
}

describe('median', () => {
  it('is the middle value, or the mean of the two middle values', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7, 7, 7, 1, 7, 7])).toBe(7);
    expect(median([])).toBeNaN();
  });
  it('agrees with a sort on random data', () => {
    for (let n = 1; n < 60; n++) {
      const x = fakeLatencies(n, n);
      const s = [...x].sort((a, b) => a - b);
      expect(median(x)).toBeCloseTo(n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2, 12);
    }
  });
});

describe('estimateSpeedup', () => {
  it('reads 1.00× within noise when both series come from the same model, stalls included', () => {
    const a = fakeLatencies(2000, 1);
    const b = fakeLatencies(2000, 2);
    b[10] = 400; // one stall that would move a ratio of means by ~1×
    const s = estimateSpeedup(a, b);
    expect(s.low).toBeLessThanOrEqual(1);
    expect(s.high).toBeGreaterThanOrEqual(1);
    expect(Math.abs(s.median - 1)).toBeLessThan(0.05);
    expect(s).toMatchObject({ confidence: 0.95, method: 'paired-bootstrap-median-ratio', pairs: 2000 });
    const meanRatio = b.reduce((x, y) => x + y) / a.reduce((x, y) => x + y);
    expect(meanRatio).toBeGreaterThan(1.5);
  });
  it('finds a real difference: a model 1.5× slower is not within noise of 1', () => {
    const s = estimateSpeedup(fakeLatencies(500, 3), fakeLatencies(500, 4, 1.5));
    expect(s.low).toBeGreaterThan(1.3);
    expect(s.high).toBeLessThan(1.7);
    expect(s.low).toBeLessThanOrEqual(s.median);
    expect(s.median).toBeLessThanOrEqual(s.high);
  });
  it('is reproducible: the same latencies and seed give the same interval, another seed may not', () => {
    const a = fakeLatencies(300, 5);
    const b = fakeLatencies(300, 6);
    expect(estimateSpeedup(a, b)).toEqual(estimateSpeedup(a, b));
    expect(estimateSpeedup(a, b, { seed: 99 }).median).toBe(estimateSpeedup(a, b).median);
  });
  it('needs paired samples', () => {
    expect(() => estimateSpeedup([], [1])).toThrow(RangeError);
  });
  it('prints the interval with the ratio', () => {
    expect(formatSpeedup({ median: 1.004, low: 0.981, high: 1.032, confidence: 0.95, method: 'paired-bootstrap-median-ratio', pairs: 10, resamples: 10, seed: 1 })).toBe('1.00× (95% CI 0.98–1.03)');
    expect(formatSpeedup(2)).toBe('2.00×');
    expect(formatSpeedup(undefined)).toBe('—');
  });
});

describe('measureAlternately', () => {
  /** A fake clock: each model's run advances it by that model's latency. */
  function clocked(latencies: number[]) {
    let t = 0;
    const order: number[] = [];
    const models = latencies.map((ms, k) => ({ run: () => { order.push(k); t += ms; } }));
    return { models, order, now: () => t };
  }
  it('alternates the order run by run, so neither model always runs first', async () => {
    const c = clocked([1, 1]);
    await measureAlternately(c.models, measurementPlan({ warmup: 0, runs: 4 }), { now: c.now });
    expect(c.order).toEqual([0, 1, 1, 0, 0, 1, 1, 0]);
  });
  it('runs until each model has the minimum measured time, for fast models too', async () => {
    const c = clocked([0.1, 2]);
    const [fast, slow] = await measureAlternately(c.models, measurementPlan({ warmup: 2, runs: 5, minTimeMs: 100 }), { now: c.now });
    expect(fast.length).toBe(slow.length);
    expect(fast.reduce((a, b) => a + b)).toBeGreaterThanOrEqual(100);
    expect(fast.length).toBeGreaterThanOrEqual(1000);
    expect(fast.length).toBeLessThanOrEqual(1001);
  });
  it('stops at the run cap, and does exactly `runs` without a time budget', async () => {
    const c = clocked([0.01]);
    expect((await measureAlternately(c.models, measurementPlan({ warmup: 0, runs: 3, minTimeMs: 1e9, maxRuns: 50 }), { now: c.now }))[0].length).toBe(50);
    expect((await measureAlternately(c.models, measurementPlan({ warmup: 0, runs: 3 }), { now: c.now }))[0].length).toBe(3);
  });
});
