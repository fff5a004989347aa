import type { CalibrationTable } from './calibration-table';
import { createRunContext } from './context';
import type { VerifyResult } from './contract';
import { Histogram } from './stats';
import { analyzeSensitivity, deriveTable, meets, parseAccuracyTarget, score, searchForTarget, spearman, type TrialRunner, type TrialScore, type TrialVariant } from './tuning';

const verify = (snrDb: number, dropPoints?: number, pre?: number): VerifyResult => ({
  samples: 10,
  labeled: dropPoints !== undefined,
  outputs: [{ output: 'y', snrDb, cosine: 0.99, maxAbsError: 0.1, meanAbsError: 0.01, ...(pre !== undefined ? { preActivation: { tensor: 'l', op: 'Softmax', snrDb: pre, cosine: 0.999, maxAbsError: 0.1 } } : {}) }],
  accuracy: dropPoints !== undefined ? { reference: 0.9, candidate: 0.9 - dropPoints / 100, dropPoints } : undefined,
  thresholds: {},
  passed: true,
  failures: [],
});

describe('accuracy targets', () => {
  it('parses the three forms and refuses the wrong direction', () => {
    expect(parseAccuracyTarget('top1-drop<=0.5')).toMatchObject({ metric: 'top1-drop', op: '<=', value: 0.5 });
    expect(parseAccuracyTarget(' snr >= 30 ')).toMatchObject({ metric: 'snr', value: 30 });
    expect(() => parseAccuracyTarget('snr<=30')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(() => parseAccuracyTarget('speed>=2')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
  it('scores SNR before a saturating activation when measured, and accuracy drop negated', () => {
    expect(score(verify(10, undefined, 25), 'snr')).toBe(25);
    expect(score(verify(10), 'snr')).toBe(10);
    expect(score(verify(10, 0.7), 'top1-drop')).toBeCloseTo(-0.7);
    expect(() => score(verify(10), 'top1-drop')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(meets(verify(10, 0.4), parseAccuracyTarget('top1-drop<=0.5'))).toBe(true);
    expect(meets(verify(10, 0.6), parseAccuracyTarget('top1-drop<=0.5'))).toBe(false);
  });
});

describe('deriveTable', () => {
  it('recomputes ranges for another method from kept histograms, and refuses without them', () => {
    const h = new Histogram(1024);
    const data = Float32Array.from({ length: 10000 }, (_, i) => (i === 0 ? 50 : (i % 100) / 100));
    h.update(data);
    const table: CalibrationTable = {
      kind: 'qforge.calibration-table',
      schemaVersion: 1,
      createdAt: '',
      backend: 'x',
      model: { sha256: 'a'.repeat(64), format: 'onnx' },
      method: 'minmax',
      methodOptions: {},
      sampleCount: 1,
      dataset: { kind: 'random', source: 'random', synthetic: true, labeled: false },
      tensors: { t: { min: 0, max: 50, range: [0, 50], histogram: h.toJSON() } },
    };
    const p = deriveTable(table, 'percentile', { percentile: 99.9 });
    expect(p.method).toBe('percentile');
    expect(p.tensors.t.range[1]).toBeLessThan(2);
    expect(deriveTable(table, 'minmax').tensors.t.range).toEqual([0, 50]);
    delete table.tensors.t.histogram;
    expect(() => deriveTable(table, 'entropy')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});

describe('spearman', () => {
  it('is 1 for the same order, -1 for the reverse, and handles ties', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1);
    expect(spearman([1, 1, 2], [5, 5, 9])).toBeCloseTo(1);
  });
});

describe('search and sensitivity over any trial runner', () => {
  // A model of four nodes: each method has a base SNR, and each node kept in float (or at 16-bit activations) adds its share.
  const BASE: Record<string, number> = { minmax: 30, percentile: 32, entropy: 31, mse: 29 };
  const GAIN: Record<string, number> = { a: 0.5, b: 3, c: 1, d: 0.2 };
  const scoreOf = (v: TrialVariant) => BASE[v.table!.method] + [...v.excludeNodes, ...(v.activation16Nodes ?? [])].reduce((s, n) => s + GAIN[n], 0);
  const result = (v: TrialVariant): TrialScore => ({ verify: verify(scoreOf(v)), score: scoreOf(v), quantized: Object.keys(GAIN).filter((n) => !v.excludeNodes.includes(n)) });
  /** Stops at the first result that satisfies `until`, as `Trial` does in one process. */
  const lazy = (ran: TrialVariant[]): TrialRunner => ({
    async runAll(vs, until) {
      const out: TrialScore[] = [];
      for (const v of vs) {
        ran.push(v);
        out.push(result(v));
        if (until?.(out[out.length - 1])) break;
      }
      return out;
    },
  });
  /** Scores every variant, as workers on a queue do, in an order of its own. */
  const eager = (ran: TrialVariant[]): TrialRunner => ({
    async runAll(vs) {
      ran.push(...vs);
      const out = await Promise.all([...vs].reverse().map(async (v) => result(v)));
      return out.reverse();
    },
  });
  const h = new Histogram(64);
  h.update(Float32Array.from({ length: 100 }, (_, i) => i / 10));
  const table: CalibrationTable = {
    kind: 'qforge.calibration-table',
    schemaVersion: 1,
    createdAt: '',
    backend: 'x',
    model: { sha256: 'a'.repeat(64), format: 'onnx' },
    method: 'minmax',
    methodOptions: {},
    sampleCount: 16,
    dataset: { kind: 'random', source: 'random', synthetic: true, labeled: false },
    tensors: { t: { min: 0, max: 10, range: [0, 10], histogram: h.toJSON() } },
  };
  const methods = ['minmax', 'percentile', 'entropy', 'mse'] as const;

  it('gives the same search result whether the runner stops early or scores every candidate', async () => {
    for (const [text, fallback] of [['snr>=31.5', 'float'], ['snr>=35.5', 'float'], ['snr>=35.5', 'a16'], ['snr>=90', 'float']] as const) {
      const lazyRan: TrialVariant[] = [];
      const eagerRan: TrialVariant[] = [];
      const opts = { methods: [...methods], maxFloatShare: 0.5, fallback };
      const a = await searchForTarget(lazy(lazyRan), table, parseAccuracyTarget(text), opts, createRunContext());
      const b = await searchForTarget(eager(eagerRan), table, parseAccuracyTarget(text), opts, createRunContext());
      expect(b).toEqual(a);
      expect(eagerRan.length).toBeGreaterThanOrEqual(lazyRan.length);
    }
    // The path itself: percentile meets 31.5 at the second method; 35.5 needs b, then b and c kept in float.
    const met = await searchForTarget(lazy([]), table, parseAccuracyTarget('snr>=35.5'), { methods: [...methods], maxFloatShare: 0.5 }, createRunContext());
    expect(met).toMatchObject({ met: true, method: 'percentile', floatNodes: ['b', 'c'] });
    expect(met.path.map((p) => p.step)).toEqual(['method minmax', 'method percentile', 'method entropy', 'method mse', 'keep b in float', 'keep c in float']);
    const early = await searchForTarget(eager([]), table, parseAccuracyTarget('snr>=31.5'), { methods: [...methods], maxFloatShare: 0.5 }, createRunContext());
    expect(early.path.map((p) => p.step)).toEqual(['method minmax', 'method percentile']);
    // Out of reach: the budget (2 of 4 nodes) is spent and the best point is reported as not met.
    const out = await searchForTarget(eager([]), table, parseAccuracyTarget('snr>=90'), { methods: [...methods], maxFloatShare: 0.5 }, createRunContext());
    expect(out).toMatchObject({ met: false, floatNodes: ['b', 'c'] });
  });

  it('ranks nodes the same from one-by-one and all-at-once runners', async () => {
    const a = await analyzeSensitivity(lazy([]), table, 'snr', createRunContext());
    const b = await analyzeSensitivity(eager([]), table, 'snr', createRunContext());
    expect(b).toEqual(a);
    expect(a.layers.map((l) => l.node)).toEqual(['b', 'c', 'a', 'd']);
    expect(a.layers[0]).toMatchObject({ allButThis: 33, recovery: 3, onlyThis: 30 + 0.5 + 1 + 0.2 });
  });
});
