import { summarizeLatencies } from './bench-stats';
import { AccuracyAccumulator, FidelityAccumulator, SNR_CAP_DB, cosineSimilarity, snrDb } from './metrics';

describe('fidelity metrics', () => {
  it('computes SNR in dB from signal and error power', () => {
    // Signal power 1 per element, error power 0.01: 20 dB.
    expect(snrDb([1, -1, 1, -1], [1.1, -0.9, 1.1, -0.9])).toBeCloseTo(20, 6);
    expect(snrDb([1, 2], [1, 2])).toBe(SNR_CAP_DB);
  });
  it('computes cosine similarity', () => {
    expect(cosineSimilarity([1, 0], [0, 1])).toBe(0);
    expect(cosineSimilarity([1, 2], [2, 4])).toBeCloseTo(1, 12);
  });
  it('accumulates over samples, with top-1 and top-k agreement on class scores', () => {
    const acc = new FidelityAccumulator('logits', 4, 2);
    acc.add([0.1, 0.9, 0, 0], [0.2, 0.8, 0, 0]); // agrees
    acc.add([0.9, 0.1, 0.5, 0], [0.4, 0.1, 0.5, 0]); // top-1 differs, ref top-1 in cand top-2
    const r = acc.result();
    expect(r.top1Agreement).toBe(0.5);
    expect(r.topKAgreement).toBe(1);
    expect(r.maxAbsError).toBeCloseTo(0.5, 6);
  });
  it('counts accuracy against labels', () => {
    const a = new AccuracyAccumulator();
    a.add([0, 1], 1);
    a.add([1, 0], 1);
    expect(a.accuracy).toBe(0.5);
  });
});

describe('summarizeLatencies', () => {
  it('reports nearest-rank percentiles and sample std', () => {
    const s = summarizeLatencies([5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
    expect(s.mean).toBe(5.5);
    expect(s.p50).toBe(5);
    expect(s.p90).toBe(9);
    expect(s.p99).toBe(10);
    expect(s.min).toBe(1);
    expect(s.std).toBeCloseTo(3.02765, 4);
    expect(() => summarizeLatencies([])).toThrow();
  });
});
