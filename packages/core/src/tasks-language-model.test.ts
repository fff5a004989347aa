import type { VerifyResult } from './contract';
import { OutputAccumulator, describeTaskMetric, detectTask, parseTaskFlags } from './tasks';
import { meets, parseAccuracyTarget, score } from './tuning';
import { judgeVerification } from './verdict';

const V = 256;
const verification = (outputs: VerifyResult['outputs'], thresholds: VerifyResult['thresholds'] = {}): VerifyResult =>
  judgeVerification({ samples: 1, labeled: false, outputs, thresholds, passed: false, failures: [], ...{} });

/** Token inputs of one [1,T] sample. */
const tokens = (ids: number[], mask?: number[]) => ({
  input_ids: { dims: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) },
  ...(mask ? { attention_mask: { dims: [1, mask.length], data: BigInt64Array.from(mask.map(BigInt)) } } : {}),
});

/** [1,T,V] logits that give the token after each position `confidence` (log-odds over the rest). */
function predicting(next: number[], confidence: number): Float32Array {
  const out = new Float32Array(next.length * V);
  next.forEach((k, t) => (out[t * V + k] = confidence));
  return out;
}

const accumulator = (modelInputs = ['input_ids', 'attention_mask']) => new OutputAccumulator('logits', { dims: [1, 4, V], producer: 'MatMul', modelInputs });

describe('language-model task', () => {
  it('is detected for [N,T,V] logits of a model fed input_ids, and only then', () => {
    expect(detectTask([1, 16, V], 'MatMul', ['input_ids', 'attention_mask']).kind).toBe('language-model');
    expect(detectTask([1, 16, V], 'MatMul', ['pixel_values']).kind).not.toBe('language-model');
    // A token classifier (9 NER labels) is not a language model.
    expect(detectTask([1, 16, 9], 'MatMul', ['input_ids']).kind).not.toBe('language-model');
    expect(parseTaskFlags(['logits=language-model'])).toEqual({ logits: 'language-model' });
  });

  it('scores the next token of every unmasked position: uniform logits have perplexity V', () => {
    const acc = accumulator();
    const uniform = new Float32Array(4 * V);
    acc.add(uniform, uniform, [1, 4, V], { inputs: tokens([1, 2, 3, 4]) });
    const t = acc.result().task!;
    expect(t.kind).toBe('language-model');
    expect(t.scoredTokens).toBe(3);
    expect(t.perplexity!.reference).toBeCloseTo(V, 6);
    expect(t.perplexity!.increasePercent).toBeCloseTo(0, 9);
    expect(t.nextTokenAgreement).toBe(1);
  });

  it('takes next tokens from input_ids shifted by one', () => {
    const ids = [10, 20, 30, 40];
    const right = accumulator();
    right.add(predicting([20, 30, 40, 0], 8), predicting([20, 30, 40, 0], 8), [1, 4, V], { inputs: tokens(ids) });
    const shiftedWrong = accumulator();
    shiftedWrong.add(predicting([10, 20, 30, 40], 8), predicting([10, 20, 30, 40], 8), [1, 4, V], { inputs: tokens(ids) });
    expect(right.result().task!.perplexity!.reference).toBeLessThan(2);
    expect(right.result().task!.nextTokenAccuracy!.reference).toBe(1);
    expect(shiftedWrong.result().task!.perplexity!.reference).toBeGreaterThan(100);
  });

  it('honours attention_mask: padded positions neither predict nor are predicted', () => {
    const ids = [10, 20, 0, 0];
    const ref = predicting([20, 0, 0, 0], 8);
    const cand = predicting([20, 99, 77, 55], 8);
    const masked = accumulator();
    masked.add(ref, cand, [1, 4, V], { inputs: tokens(ids, [1, 1, 0, 0]) });
    const t = masked.result().task!;
    expect(t.scoredTokens).toBe(1);
    // Position 1 is real (its next token is padding): it counts for agreement, not for perplexity.
    expect(t.nextTokenAgreement).toBe(0.5);
    expect(t.perplexity!.increasePercent).toBeCloseTo(0, 9);
    const unmasked = accumulator();
    unmasked.add(ref, cand, [1, 4, V], { inputs: tokens(ids) });
    expect(unmasked.result().task!.perplexity!.increasePercent).toBeGreaterThan(1);
  });

  it('passes an identical candidate and fails one whose perplexity rose more than 1%', () => {
    const ids = [5, 6, 7, 8];
    const ref = predicting([6, 7, 8, 0], 4);
    const same = accumulator();
    same.add(ref, ref, [1, 4, V], { inputs: tokens(ids) });
    const ok = verification([same.result()]);
    expect(ok.passed).toBe(true);
    expect(ok.decidedBy?.[0]).toMatch(/perplexity/);
    const worse = accumulator();
    worse.add(ref, predicting([6, 7, 8, 0], 3.5), [1, 4, V], { inputs: tokens(ids) });
    const r = worse.result();
    expect(r.task!.perplexity!.increasePercent).toBeGreaterThan(1);
    // Same arg-max everywhere: agreement alone would have passed it.
    expect(r.task!.nextTokenAgreement).toBe(1);
    expect(verification([r]).passed).toBe(false);
    expect(verification([r], { maxPerplexityIncreasePercent: 1000 }).passed).toBe(true);
    expect(describeTaskMetric(r.task!)).toMatch(/perplexity .* → .* \(\+\d+\.\d\d%\) over 3 tokens/);
  });

  it('reads Softmax outputs as probabilities', () => {
    const acc = new OutputAccumulator('probs', { dims: [1, 2, V], producer: 'Softmax', modelInputs: ['input_ids'] });
    const p = new Float32Array(2 * V).fill(0.5 / (V - 1));
    p[3] = 0.5;
    acc.add(p, p, [1, 2, V], { inputs: tokens([1, 3]) });
    expect(acc.result().task!.perplexity!.reference).toBeCloseTo(2, 5);
  });

  it('fails with a coded error when the sample has no input_ids or they do not match the logits', () => {
    const acc = new OutputAccumulator('logits', { dims: [1, 4, V] }, { tasks: { logits: 'language-model' } });
    expect(() => acc.add(new Float32Array(4 * V), new Float32Array(4 * V), [1, 4, V], {})).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(() => acc.add(new Float32Array(4 * V), new Float32Array(4 * V), [1, 4, V], { inputs: tokens([1, 2, 3]) })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(() => acc.add(new Float32Array(4 * V), new Float32Array(4 * V), [1, 4, V], { inputs: tokens([1, 2, 3, 999]) })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });

  it('fails a verification with nothing to score rather than passing it', () => {
    const acc = accumulator();
    acc.add(new Float32Array(4 * V), new Float32Array(4 * V), [1, 4, V], { inputs: tokens([1, 2, 3, 4], [1, 0, 0, 0]) });
    expect(verification([acc.result()]).passed).toBe(false);
  });

  it('drives --accuracy-target ppl-increase<=X and next-token-agree>=X', () => {
    const ids = [5, 6, 7, 8];
    const ref = predicting([6, 7, 8, 0], 4);
    const acc = accumulator();
    acc.add(ref, predicting([6, 7, 8, 0], 3.9), [1, 4, V], { inputs: tokens(ids) });
    const v = verification([acc.result()]);
    const increase = v.outputs[0].task!.perplexity!.increasePercent;
    expect(score(v, 'ppl-increase')).toBeCloseTo(-increase, 9);
    expect(meets(v, parseAccuracyTarget(`ppl-increase<=${(increase + 0.01).toFixed(2)}`))).toBe(true);
    expect(meets(v, parseAccuracyTarget(`ppl-increase<=${(increase / 2).toFixed(4)}`))).toBe(false);
    expect(meets(v, parseAccuracyTarget('next-token-agree>=0.99'))).toBe(true);
    expect(() => parseAccuracyTarget('ppl-increase>=1')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});
