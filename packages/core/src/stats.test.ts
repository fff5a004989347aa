import { mulberry32 } from './datasets/open';
import { Histogram, RunningMinMax, chooseRange, entropyThreshold } from './stats';

function normal(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

describe('RunningMinMax', () => {
  it('tracks exact extremes, or a moving average of per-sample extremes', () => {
    const exact = new RunningMinMax();
    exact.update([1, 2, 3]);
    exact.update([-5, 0]);
    expect([exact.min, exact.max]).toEqual([-5, 3]);
    const avg = new RunningMinMax(0.5);
    avg.update([0, 10]);
    avg.update([0, 20]);
    expect(avg.max).toBe(15);
  });
});

describe('Histogram', () => {
  it('grows its range without losing mass and finds quantiles', () => {
    const h = new Histogram(2048);
    h.update(Float32Array.from([0.1, 0.2, 0.3]));
    h.update(Float32Array.from([50, -20]));
    expect(h.total).toBe(5);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(5);
    expect(h.limit).toBe(64);
    expect(h.quantile(1)).toBeGreaterThanOrEqual(49);
  });
  it('merges exactly: two halves equal the whole', () => {
    const a = normal(5000, 1);
    const b = normal(5000, 2).map((x) => x * 8);
    const whole = new Histogram(1024);
    whole.update(a);
    whole.update(b);
    const h1 = new Histogram(1024);
    h1.update(a);
    const h2 = new Histogram(1024);
    h2.update(b);
    h1.merge(h2);
    expect(h1.limit).toBe(whole.limit);
    expect(Array.from(h1.counts)).toEqual(Array.from(whole.counts));
  });
  it('round-trips through JSON', () => {
    const h = new Histogram(64);
    h.update([1, 2, -3]);
    const back = Histogram.fromJSON(JSON.parse(JSON.stringify(h.toJSON())));
    expect(back.total).toBe(3);
    expect(back.limit).toBe(h.limit);
  });
});

describe('chooseRange', () => {
  const data = normal(200000, 3);
  data[0] = 40; // one outlier far outside the bulk
  const h = new Histogram(4096);
  h.update(data);
  let min = Infinity;
  let max = -Infinity;
  for (const v of data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  it('minmax keeps the outlier', () => {
    expect(chooseRange(min, max, h, { method: 'minmax' })[1]).toBe(40);
  });
  it('percentile and entropy clip the outlier but keep the bulk; mse trades clipping against rounding', () => {
    for (const method of ['percentile', 'entropy', 'mse'] as const) {
      const [lo, hi] = chooseRange(min, max, h, { method, percentile: 99.99 });
      expect(hi).toBeLessThan(method === 'mse' ? 39 : 20);
      expect(hi).toBeGreaterThan(2.5);
      expect(lo).toBeLessThan(-2.5);
    }
  });
  it('every method accepts a one-signed tensor whose min is above 0 (a sigmoid or a shifted activation)', () => {
    const pos = new Histogram(4096);
    const vals = Array.from(normal(20000, 5), (v) => 0.04 + 0.001 * Math.abs(v));
    vals[0] = 3; // an outlier that makes the clip threshold fall below the min
    pos.update(vals);
    const lo = Math.min(...vals);
    for (const method of ['minmax', 'percentile', 'entropy', 'mse'] as const) {
      const [a, b] = chooseRange(lo, 3, pos, { method, percentile: 99.99 });
      expect(a).toBeLessThanOrEqual(b);
      expect(b).toBeGreaterThan(0.04);
    }
  });
  it('entropy returns the max when the distribution has few bins', () => {
    const small = new Histogram(256);
    small.update([0, 1]);
    expect(entropyThreshold(small, 0, 1)).toBe(1);
  });
});

describe('entropy calibration', () => {
  it('does not collapse to the shortest candidate range on a plain bell curve', () => {
    const h = new Histogram(4096);
    const data = normal(100000, 9);
    h.update(data);
    let min = Infinity;
    let max = -Infinity;
    for (const v of data) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    const t = entropyThreshold(h, min, max);
    // A 128-level quantizer of N(0,1) clips around 2.5–4 sigma, never at the minimum candidate.
    expect(t).toBeGreaterThan(2);
    expect(t).toBeLessThanOrEqual(Math.max(-min, max));
  });
});
