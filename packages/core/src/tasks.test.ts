import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VerifyResult } from './contract';
import { datasetFromIterable } from './datasets/custom';
import { withLabelFile } from './datasets/labels';
import { OutputAccumulator, ctcGreedy, ctcText, describeTaskMetric, detectTask, editDistance, parseTaskFlags, readCharset } from './tasks';
import { parseAccuracyTarget, score, meets } from './tuning';
import { judgeVerification } from './verdict';

const verification = (outputs: VerifyResult['outputs'], extra: Partial<VerifyResult> = {}): VerifyResult => judgeVerification({ samples: 1, labeled: false, outputs, thresholds: {}, passed: false, failures: [], ...extra });

/** A [1,T,C] score array whose arg-max at each position is `path[t]`. */
function sequence(path: number[], classes: number): Float32Array {
  const out = new Float32Array(path.length * classes).fill(0.01);
  path.forEach((k, t) => (out[t * classes + k] = 0.9));
  return out;
}

describe('detectTask', () => {
  it.each([
    [[1, 1, 64, 64], 'Sigmoid', 'map'],
    [[1, 1, 64, 64], undefined, 'map'],
    [[1, 40, 6625], 'Softmax', 'sequence'],
    [[1, 10], 'Softmax', 'classes'],
    [[1, 10], undefined, 'classes'],
    [[1, 128], 'LpNormalization', 'embedding'],
    [[1, 1], 'Gemm', 'embedding'],
    [[1, 64, 8, 8], 'Relu', 'embedding'],
  ])('%j from %s is %s', (dims, producer, kind) => {
    expect(detectTask(dims as number[], producer as string | undefined).kind).toBe(kind);
  });

  it('--task overrides detection and says so', () => {
    const acc = new OutputAccumulator('y', { dims: [1, 128], producer: 'Softmax' }, { tasks: { y: 'embedding' } });
    expect(acc.kind).toBe('embedding');
    acc.add([1, 2, 3], [1, 2, 3], [1, 3]);
    expect(acc.result().task).toMatchObject({ kind: 'embedding', detectedFrom: '--task y=embedding', relativeError: 0 });
  });

  it('parses --task values and refuses unknown kinds', () => {
    expect(parseTaskFlags(['a.b=map', 'x=sequence'])).toEqual({ 'a.b': 'map', x: 'sequence' });
    expect(() => parseTaskFlags(['x=segmentation'])).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(() => parseTaskFlags(['=map'])).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});

describe('maps: IoU of the binarized map', () => {
  const map = (on: (i: number) => boolean) => Float32Array.from({ length: 100 }, (_, i) => (on(i) ? 0.95 : 0.02));
  it('a map that keeps its regions passes on IoU, whatever its SNR', () => {
    const acc = new OutputAccumulator('prob', { dims: [1, 1, 10, 10], producer: 'Sigmoid' });
    // Probabilities move a lot (low SNR) but stay on the same side of 0.5.
    acc.add(map((i) => i < 30), Float32Array.from(map((i) => i < 30), (v) => (v > 0.5 ? 0.6 : 0.4)), [1, 1, 10, 10]);
    const v = verification([acc.result()]);
    expect(v.outputs[0].task).toMatchObject({ kind: 'map', iou: 1, pixelAgreement: 1, threshold: 0.5 });
    expect(v.outputs[0].snrDb).toBeLessThan(20);
    expect(v.passed).toBe(true);
    expect(v.decidedBy![0]).toMatch(/map IoU 1\.000 ≥ 0\.93/);
  });
  it('a map whose regions moved fails on IoU, and the reason names it', () => {
    const acc = new OutputAccumulator('prob', { dims: [1, 1, 10, 10], producer: 'Sigmoid' });
    acc.add(map((i) => i < 30), map((i) => i >= 15 && i < 45), [1, 1, 10, 10]);
    const v = verification([acc.result()]);
    expect(v.outputs[0].task!.iou).toBeCloseTo(15 / 45);
    expect(v.passed).toBe(false);
    expect(v.failures[0]).toMatch(/^prob \(map\): map IoU 0\.333 < 0\.93/);
  });
  it('--map-threshold moves the cut', () => {
    const acc = new OutputAccumulator('prob', { dims: [1, 1, 10, 10] }, { mapThreshold: 0.99 });
    acc.add(map((i) => i < 30), map(() => false), [1, 1, 10, 10]);
    expect(acc.result().task).toMatchObject({ iou: 1, threshold: 0.99 });
  });
});

describe('sequences: CTC-decoded lines', () => {
  const charset = ['a', 'b', 'c'];
  it('greedy CTC collapses repeats and drops blanks; PaddleOCR\'s extra class is a space', () => {
    const s = sequence([1, 1, 0, 1, 2, 4, 3, 0], 5);
    expect(ctcGreedy(s, 0, 8, 5, 0)).toEqual([1, 1, 2, 4, 3]);
    expect(ctcText([1, 1, 2, 4, 3], 5, { blank: 0, charset })).toBe('aab c');
    expect(() => ctcText([1], 9, { blank: 0, charset })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
  it('edit distance', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
  });
  it('with string labels, line accuracy decides; an int8 model that reads the same passes', () => {
    const acc = new OutputAccumulator('probs', { dims: [1, 6, 4], producer: 'Softmax' }, { ctc: { blank: 0, charset } });
    const ab = sequence([1, 0, 2, 2, 0, 0], 4);
    acc.add(ab, ab, [1, 6, 4], { text: 'ab' });
    acc.add(ab, ab, [1, 6, 4], { text: 'ac' });
    const v = verification([acc.result()]);
    expect(v.outputs[0].task).toMatchObject({ kind: 'sequence', lineAgreement: 1, lineAccuracy: { reference: 0.5, candidate: 0.5, dropPoints: 0 } });
    expect(v.outputs[0].task!.charAccuracy!.reference).toBeCloseTo(0.75);
    expect(v.passed).toBe(true);
  });
  it('an int8 model that misreads lines fails on line accuracy', () => {
    const acc = new OutputAccumulator('probs', { dims: [1, 6, 4], producer: 'Softmax' }, { ctc: { blank: 0, charset } });
    const ab = sequence([1, 0, 2, 2, 0, 0], 4);
    const ac = sequence([1, 0, 3, 3, 0, 0], 4);
    for (let i = 0; i < 4; i++) acc.add(ab, i === 0 ? ac : ab, [1, 6, 4], { text: 'ab' });
    const v = verification([acc.result()]);
    expect(v.outputs[0].task!.lineAccuracy).toMatchObject({ reference: 1, candidate: 0.75, dropPoints: 25 });
    expect(v.passed).toBe(false);
    expect(v.failures[0]).toMatch(/line accuracy 100\.0% → 75\.0%, drop 25\.00 points > 3/);
  });
  it('an fp32 model that reads none of the labels is no ground for a pass', () => {
    const acc = new OutputAccumulator('probs', { dims: [1, 6, 4], producer: 'Softmax' }, { ctc: { blank: 0, charset } });
    const ab = sequence([1, 0, 2, 2, 0, 0], 4);
    acc.add(ab, ab, [1, 6, 4], { text: 'zz' });
    const v = verification([acc.result()]);
    expect(v.passed).toBe(false);
    expect(v.failures[0]).toMatch(/reads none of the labeled lines/);
  });
  it('without labels decoded-line agreement decides, without CTC per-position agreement', () => {
    const ab = sequence([1, 0, 2, 2, 0, 0], 4);
    const abb = sequence([1, 0, 2, 0, 2, 0], 4);
    const ctc = new OutputAccumulator('probs', { dims: [1, 6, 4], producer: 'Softmax' }, { ctc: { blank: 0 } });
    ctc.add(ab, abb, [1, 6, 4]);
    expect(verification([ctc.result()]).failures[0]).toMatch(/decoded lines equal 0\.0% < 90\.0%/);
    const plain = new OutputAccumulator('probs', { dims: [1, 6, 4], producer: 'Softmax' });
    plain.add(ab, ab, [1, 6, 4]);
    expect(verification([plain.result()]).decidedBy![0]).toMatch(/position agreement 100\.0%/);
  });
  describe('ignoreSpace (--ignore-space, PaddleOCR RecMetric ignore_space)', () => {
    // Blank, a, b, c, and PaddleOCR's trailing space class (index 4).
    const ab = sequence([1, 0, 2, 0, 0, 0], 5);
    const abSpace = sequence([1, 0, 2, 4, 0, 0], 5);
    /** fp32 reads "ab" three times; int8 adds a trailing space once; one label has a space fp32 never reads. */
    const measure = (ctc: { blank: number; charset?: string[]; ignoreSpace?: boolean }) => {
      const acc = new OutputAccumulator('probs', { dims: [1, 6, 5], producer: 'Softmax' }, { ctc });
      acc.add(ab, abSpace, [1, 6, 5], { text: 'ab' });
      acc.add(ab, ab, [1, 6, 5], { text: 'ab' });
      acc.add(ab, ab, [1, 6, 5], { text: 'a b' });
      return verification([acc.result()]);
    };

    it('spaces count by default: lines that differ only in spaces are misread, and the verdict fails', () => {
      const v = measure({ blank: 0, charset });
      const t = v.outputs[0].task!;
      expect(t.ignoreSpace).toBeUndefined();
      expect(t.lineAgreement).toBeCloseTo(2 / 3);
      expect(t.lineAccuracy!.reference).toBeCloseTo(2 / 3);
      expect(t.lineAccuracy!.candidate).toBeCloseTo(1 / 3);
      expect(t.charAccuracy!.reference).toBeCloseTo((1 + 1 + 2 / 3) / 3);
      expect(t.charAccuracy!.candidate).toBeCloseTo((2 / 3 + 1 + 2 / 3) / 3);
      expect(describeTaskMetric(t)).toBe('line accuracy 66.7% → 33.3% (char 88.9% → 77.8%)');
      expect(v.passed).toBe(false);
      expect(v.failures[0]).toBe('probs (sequence): line accuracy 66.7% → 33.3%, drop 33.33 points > 3');
    });

    it('with ignoreSpace, prediction and label are compared without spaces, and the text says so', () => {
      const v = measure({ blank: 0, charset, ignoreSpace: true });
      const t = v.outputs[0].task!;
      expect(t).toMatchObject({ ignoreSpace: true, lineAgreement: 1, lineAccuracy: { reference: 1, candidate: 1, dropPoints: 0 }, charAccuracy: { reference: 1, candidate: 1, dropPoints: 0 } });
      // The examples show what was decoded, spaces and all.
      expect(t.examples![0]).toEqual({ label: 'ab', reference: 'ab', candidate: 'ab ' });
      expect(describeTaskMetric(t)).toBe('line accuracy (spaces ignored) 100.0% → 100.0% (char 100.0% → 100.0%)');
      expect(v.passed).toBe(true);
      expect(v.decidedBy![0]).toBe('probs (sequence): line accuracy (spaces ignored) 100.0% → 100.0%, drop 0.00 points ≤ 3');
    });

    it('other characters still count: an int8 model that misreads a letter fails with spaces ignored', () => {
      const acc = new OutputAccumulator('probs', { dims: [1, 6, 5], producer: 'Softmax' }, { ctc: { blank: 0, charset, ignoreSpace: true } });
      acc.add(ab, sequence([1, 0, 3, 4, 0, 0], 5), [1, 6, 5], { text: 'ab' });
      const v = verification([acc.result()]);
      expect(v.outputs[0].task!.lineAccuracy).toMatchObject({ reference: 1, candidate: 0, dropPoints: 100 });
      expect(v.failures[0]).toMatch(/line accuracy \(spaces ignored\) 100\.0% → 0\.0%/);
    });

    it('without labels it applies to decoded-line agreement; without a charset (index sequences) it is not applied nor claimed', () => {
      const unlabeled = new OutputAccumulator('probs', { dims: [1, 6, 5], producer: 'Softmax' }, { ctc: { blank: 0, charset, ignoreSpace: true } });
      unlabeled.add(ab, abSpace, [1, 6, 5]);
      expect(verification([unlabeled.result()]).decidedBy![0]).toMatch(/decoded lines equal \(spaces ignored\) 100\.0% ≥ 90\.0%/);
      const indices = new OutputAccumulator('probs', { dims: [1, 6, 5], producer: 'Softmax' }, { ctc: { blank: 0, ignoreSpace: true } });
      indices.add(ab, ab, [1, 6, 5]);
      const t = indices.result().task!;
      expect(t.ignoreSpace).toBeUndefined();
      expect(t.examples![0].reference).toBe('1 2');
      expect(describeTaskMetric(t)).toBe('decoded lines equal 100.0%');
    });
  });
  it('reads a charset file, one symbol per line, spaces kept', () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-charset-'));
    writeFileSync(join(dir, 'keys.txt'), 'a\r\n \nb\n');
    expect(readCharset(join(dir, 'keys.txt'))).toEqual(['a', ' ', 'b']);
    expect(() => readCharset(join(dir, 'missing.txt'))).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});

describe('classes and embeddings', () => {
  it('class scores without labels: top-1 agreement decides', () => {
    const acc = new OutputAccumulator('logits', { dims: [1, 3], producer: 'Gemm' });
    for (let i = 0; i < 10; i++) acc.add([0, 1, 0], i < 9 ? [0, 1, 0] : [1, 0, 0], [1, 3]);
    const v = verification([acc.result()]);
    expect(v.outputs[0].top1Agreement).toBe(0.9);
    expect(v.failures[0]).toMatch(/top-1 agreement 90\.0% < 98\.0%/);
  });
  it('class scores with labels: the accuracy drop decides, not agreement', () => {
    const acc = new OutputAccumulator('logits', { dims: [1, 3] });
    for (let i = 0; i < 10; i++) acc.add([0, 1, 0], i < 9 ? [0, 1, 0] : [1, 0, 0], [1, 3]);
    const pass = verification([acc.result()], { labeled: true, accuracy: { reference: 0.9, candidate: 0.9, dropPoints: 0 } });
    expect(pass.passed).toBe(true);
    expect(pass.decidedBy![0]).toMatch(/top-1 accuracy 90\.0% → 90\.0%/);
    const fail = verification([acc.result()], { labeled: true, accuracy: { reference: 0.9, candidate: 0.8, dropPoints: 10 } });
    expect(fail.failures).toEqual([expect.stringMatching(/drop 10\.00 points > 1/)]);
  });
  it('embeddings: relative error decides; an explicit --min-snr still judges', () => {
    const acc = new OutputAccumulator('emb', { dims: [1, 4], producer: 'LpNormalization' });
    acc.add([1, 0, 0, 0], [0.98, 0.02, 0, 0], [1, 4]);
    const r = acc.result();
    expect(r.task!.relativeError).toBeCloseTo(Math.sqrt(0.0008));
    expect(verification([r]).passed).toBe(true);
    const strict = judgeVerification({ samples: 1, labeled: false, outputs: [r], thresholds: { minSnrDb: 60 }, passed: true, failures: [] });
    expect(strict.failures).toEqual([expect.stringMatching(/SNR .* < 60 dB/)]);
    const far = new OutputAccumulator('emb', { dims: [1, 4], producer: 'LpNormalization' });
    far.add([1, 0, 0, 0], [0, 1, 0, 0], [1, 4]);
    expect(verification([far.result()]).passed).toBe(false);
  });
});

describe('task metrics as accuracy targets', () => {
  const mapResult = (iou: number): VerifyResult => ({ samples: 1, labeled: false, outputs: [{ output: 'm', snrDb: 10, cosine: 0.9, maxAbsError: 1, meanAbsError: 0.1, task: { kind: 'map', detectedFrom: 'x', iou, threshold: 0.5, pixelAgreement: 0.99 } }], thresholds: {}, passed: true, failures: [] });
  it('iou>=0.93 is met at 0.95 and not at 0.9', () => {
    const t = parseAccuracyTarget('iou>=0.93');
    expect(meets(mapResult(0.95), t)).toBe(true);
    expect(meets(mapResult(0.9), t)).toBe(false);
  });
  it('drops take <=, are negated by score, and a metric the outputs lack is a coded error', () => {
    expect(parseAccuracyTarget('line-acc-drop<=1')).toMatchObject({ metric: 'line-acc-drop', op: '<=' });
    expect(() => parseAccuracyTarget('iou<=0.9')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(() => parseAccuracyTarget('psnr>=3')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
    expect(() => score(mapResult(0.9), 'line-acc-drop')).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});

describe('label files', () => {
  const data = () => datasetFromIterable(() => [0, 1, 2].map((i) => ({ x: { dtype: 'float32' as const, dims: [1], data: new Float32Array([i]) } })), { name: 'three', count: 3 });
  it('labels.txt gives each sample its text, in order, also from an offset', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-labels-'));
    writeFileSync(join(dir, 'labels.txt'), 'one\ntwo words\nthree\n');
    const ds = withLabelFile(data(), join(dir, 'labels.txt'));
    const texts: (string | undefined)[] = [];
    for await (const s of ds.samples({ offset: 1 })) texts.push(s.text);
    expect(texts).toEqual(['two words', 'three']);
    expect(ds.description).toMatchObject({ labelFile: join(dir, 'labels.txt'), labeled: false });
  });
  it('a label count that does not match the data is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-labels-'));
    writeFileSync(join(dir, 'labels.json'), '["a", "b"]');
    expect(() => withLabelFile(data(), join(dir, 'labels.json'))).toThrow(expect.objectContaining({ code: 'E_DATASET_INVALID' }));
    writeFileSync(join(dir, 'labels.json'), '[1, "b", 2.5]');
    expect(() => withLabelFile(data(), join(dir, 'labels.json'))).toThrow(expect.objectContaining({ code: 'E_DATASET_INVALID' }));
  });
  it('integer labels in labels.json are class labels', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-labels-'));
    writeFileSync(join(dir, 'labels.json'), '[2, 0, 1]');
    const ds = withLabelFile(data(), join(dir, 'labels.json'));
    const labels: (number | undefined)[] = [];
    for await (const s of ds.samples()) labels.push(s.label);
    expect(labels).toEqual([2, 0, 1]);
    expect(ds.description.labeled).toBe(true);
  });
});
