// Fidelity metrics every backend reports, accumulated sample by sample.
import type { TaskFidelity } from './tasks';

/** SNR is capped here when the candidate equals the reference (the ratio is infinite). */
export const SNR_CAP_DB = 200;

export interface OutputFidelity {
  output: string;
  /** 10·log10(Σref² / Σ(ref−cand)²) over all samples. */
  snrDb: number;
  cosine: number;
  maxAbsError: number;
  meanAbsError: number;
  /** Share (0..1) of samples whose arg-max agrees; present for outputs that look like class scores. */
  top1Agreement?: number;
  /** Share of samples whose reference top-1 is inside the candidate's top-k. */
  topKAgreement?: number;
  topK?: number;
  /**
   * The same comparison just before the output's saturating activation (Softmax/Sigmoid), where
   * present: near-binary probabilities make output SNR swing on a few flipped values, logits do not.
   */
  preActivation?: { tensor: string; op: string; snrDb: number; cosine: number; maxAbsError: number };
  /** What the output means and the metric that judges it (tasks.ts); absent in older reports. */
  task?: TaskFidelity;
}

/** Error measured at one intermediate tensor (a quantized layer's output). */
export interface LayerError {
  tensor: string;
  node?: string;
  opType?: string;
  snrDb: number;
  cosine: number;
  maxAbsError: number;
  /** Elements of the tensor in one run of the model (the first sample's, batch included): the latency search's cost of keeping its node in float. */
  elements?: number;
}

export function snrDb(reference: ArrayLike<number>, candidate: ArrayLike<number>): number {
  const acc = new FidelityAccumulator('x');
  acc.add(reference, candidate);
  return acc.result().snrDb;
}

export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  if (na === 0 && nb === 0) return 1;
  if (na === 0 || nb === 0) return 0;
  return dot / Math.sqrt(na * nb);
}

export function argmax(data: ArrayLike<number>, offset = 0, length = data.length - offset): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = data[offset + i];
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

export function topKIndices(data: ArrayLike<number>, k: number, offset = 0, length = data.length - offset): number[] {
  const idx = Array.from({ length }, (_, i) => i);
  idx.sort((x, y) => data[offset + y] - data[offset + x]);
  return idx.slice(0, k);
}

/**
 * Accumulates fidelity of one output over many samples. `classes` > 1 enables top-k agreement
 * (the last axis is treated as class scores, one row per batch element).
 */
export class FidelityAccumulator {
  private sumRef2 = 0;
  private sumErr2 = 0;
  private dot = 0;
  private sumCand2 = 0;
  private sumAbs = 0;
  private maxAbs = 0;
  private count = 0;
  private rows = 0;
  private top1 = 0;
  private topk = 0;

  constructor(readonly output: string, readonly classes = 0, readonly k = 5) {}

  add(reference: ArrayLike<number>, candidate: ArrayLike<number>): void {
    if (reference.length !== candidate.length) throw new RangeError(`output ${this.output}: ${reference.length} vs ${candidate.length} elements`);
    for (let i = 0; i < reference.length; i++) {
      const r = reference[i];
      const c = candidate[i];
      const e = r - c;
      this.sumRef2 += r * r;
      this.sumErr2 += e * e;
      this.sumCand2 += c * c;
      this.dot += r * c;
      const a = Math.abs(e);
      this.sumAbs += a;
      if (a > this.maxAbs || Number.isNaN(a)) this.maxAbs = a;
    }
    this.count += reference.length;
    if (this.classes > 1 && reference.length % this.classes === 0) {
      for (let off = 0; off < reference.length; off += this.classes) {
        const refTop = argmax(reference, off, this.classes);
        if (argmax(candidate, off, this.classes) === refTop) this.top1++;
        if (topKIndices(candidate, Math.min(this.k, this.classes), off, this.classes).includes(refTop)) this.topk++;
        this.rows++;
      }
    }
  }

  result(): OutputFidelity {
    let snr: number;
    if (this.sumErr2 === 0) snr = SNR_CAP_DB;
    else if (this.sumRef2 === 0) snr = -SNR_CAP_DB;
    else snr = Math.min(SNR_CAP_DB, 10 * Math.log10(this.sumRef2 / this.sumErr2));
    let cosine: number;
    if (this.sumRef2 === 0 && this.sumCand2 === 0) cosine = 1;
    else if (this.sumRef2 === 0 || this.sumCand2 === 0) cosine = 0;
    else cosine = this.dot / Math.sqrt(this.sumRef2 * this.sumCand2);
    const out: OutputFidelity = {
      output: this.output,
      snrDb: Number.isNaN(snr) ? -SNR_CAP_DB : snr,
      cosine: Number.isNaN(cosine) ? 0 : cosine,
      maxAbsError: this.maxAbs,
      meanAbsError: this.count ? this.sumAbs / this.count : 0,
    };
    if (this.rows > 0) {
      out.top1Agreement = this.top1 / this.rows;
      out.topKAgreement = this.topk / this.rows;
      out.topK = Math.min(this.k, this.classes);
    }
    return out;
  }
}

/** Top-1 accuracy against integer labels, accumulated per sample. */
export class AccuracyAccumulator {
  correct = 0;
  total = 0;
  add(scores: ArrayLike<number>, label: number): void {
    if (argmax(scores) === label) this.correct++;
    this.total++;
  }
  get accuracy(): number {
    return this.total ? this.correct / this.total : 0;
  }
}
