import type { CalibrationTable } from './calibration-table';
import type { VerifyResult } from './contract';
import { Histogram } from './stats';
import { deriveTable, meets, parseAccuracyTarget, score, spearman } from './tuning';

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
