// Task-aware verification: each output is judged by the metric its meaning calls for.
import { readFileSync } from 'node:fs';
import type { Tensor } from './tensor';
import { errInvalidOption } from './errors';
import { FidelityAccumulator, argmax, topKIndices, type OutputFidelity } from './metrics';

/**
 * What an output means, and so how it is judged:
 * - `classes`: class scores `[N,C]` (Softmax or logits) — top-1 agreement, accuracy with labels;
 * - `map`: a probability/score map (`Sigmoid`, `[N,1,H,W]`) — IoU of the map binarized at a threshold;
 * - `sequence`: class scores per position `[N,T,C]` — per-position agreement, CTC-decoded lines;
 * - `embedding`: embeddings and regression values — relative error (and cosine);
 * - `language-model`: next-token logits `[N,T,V]` of a model fed `input_ids` — perplexity of fp32 and
 *   the candidate on the data's own next tokens, and next-token (arg-max) agreement.
 */
export type TaskKind = 'classes' | 'map' | 'sequence' | 'embedding' | 'language-model';
export const TASK_KINDS: readonly TaskKind[] = ['classes', 'map', 'sequence', 'embedding', 'language-model'];

/** Greedy CTC decoding of `sequence` outputs (PaddleOCR, CRNN recognizers). */
export interface CtcOptions {
  /** Index of the blank class. @defaultValue 0 */
  blank: number;
  /**
   * Symbols of the non-blank classes in index order (one per line of a PaddleOCR `ppocr_keys_v1.txt`).
   * When the model has one class more than blank + charset, that last class is a space (PaddleOCR's
   * `use_space_char`). Absent: strings are compared as class-index sequences, labels cannot be read.
   */
  charset?: string[];
  /** Where the charset came from, for reports. */
  charsetFile?: string;
  /**
   * Compare decoded lines and labels with every space removed (`--ignore-space`), as PaddleOCR's
   * `RecMetric(ignore_space=True)` does: line accuracy, character accuracy and line agreement stop
   * counting where spaces fall. Needs `charset` (index sequences have no spaces); without one it is
   * not applied and the result does not claim it. @defaultValue false
   */
  ignoreSpace?: boolean;
}

/** How outputs are interpreted; part of `VerifyOptions`. */
export interface TaskOptions {
  /** Output name → kind, overriding detection (`--task <output>=<kind>`). */
  tasks?: Record<string, TaskKind>;
  /** Probability above which a map pixel counts as "on". @defaultValue 0.5 */
  mapThreshold?: number;
  /** Greedy-decode `sequence` outputs as CTC and compare the strings (`--ctc`). */
  ctc?: CtcOptions;
}

/** Accuracy of fp32 and int8 against labels, and the drop in percentage points. */
export interface AccuracyPair {
  reference: number;
  candidate: number;
  dropPoints: number;
}

/** The task-level comparison of one output. Which fields exist depends on `kind`. */
export interface TaskFidelity {
  kind: TaskKind;
  /** Why this kind: `--task`, or what detection saw (`Sigmoid output [1,1,640,640]`). */
  detectedFrom: string;
  /** classes: share of samples whose arg-max agrees. */
  top1Agreement?: number;
  topKAgreement?: number;
  topK?: number;
  /** sequence: share of positions whose arg-max agrees. */
  positionAgreement?: number;
  /** map: the binarization threshold. */
  threshold?: number;
  /** map: |A∩B| / |A∪B| of the binarized maps, pooled over all samples (1 when both are empty). */
  iou?: number;
  /** map: share of pixels binarized the same way. */
  pixelAgreement?: number;
  /** sequence with CTC: share of samples whose decoded strings are equal. */
  lineAgreement?: number;
  /** sequence with CTC and a charset: lines and labels were compared with every space removed (`--ignore-space`). */
  ignoreSpace?: boolean;
  /** sequence with CTC and string labels: share of lines read exactly. */
  lineAccuracy?: AccuracyPair;
  /** sequence with CTC and string labels: 1 − mean normalized edit distance (PaddleOCR's norm_edit_dis). */
  charAccuracy?: AccuracyPair;
  /** A few decoded lines, for reports (as decoded: spaces kept even when `ignoreSpace`). */
  examples?: { label?: string; reference: string; candidate: string }[];
  /** embedding: ‖ref − cand‖ / ‖ref‖ over all samples (0.1 is the old 20 dB SNR). */
  relativeError?: number;
  /** language-model: share of unmasked positions whose arg-max (the greedy next token) agrees. */
  nextTokenAgreement?: number;
  /**
   * language-model: exp(mean negative log-likelihood of input_ids[t+1] given positions ≤ t) over the
   * positions where both t and t+1 are unmasked; `increasePercent` = (candidate / reference − 1) · 100.
   */
  perplexity?: { reference: number; candidate: number; increasePercent: number };
  /** language-model: share of scored positions whose arg-max is the data's next token (fp32, candidate). */
  nextTokenAccuracy?: AccuracyPair;
  /** language-model: how many next tokens the perplexity is over. */
  scoredTokens?: number;
}

/** Default thresholds per kind, applied where the caller set none (docs/verification.md). */
export const DEFAULT_TASK_THRESHOLDS = {
  minTop1Agreement: 0.98,
  // A detector's map at IoU 0.92 already misses lines fp32 finds (PP-OCRv4 det: 332 vs 336 of 347).
  minIou: 0.93,
  minPositionAgreement: 0.95,
  minLineAgreement: 0.9,
  maxLineAccuracyDropPoints: 3,
  maxRelativeError: 0.1,
  maxPerplexityIncreasePercent: 1,
} as const;

/**
 * Token classifiers (NER, POS) also map `input_ids` to `[N,T,C]`, with tens of labels; a vocabulary
 * has hundreds or more (256 for byte-level models). Smaller outputs stay `sequence` unless `--task` says.
 */
export const MIN_LM_VOCABULARY = 128;

export const DEFAULT_MAP_THRESHOLD = 0.5;

/** Parses `--task out=map` values. */
export function parseTaskFlags(values: string[]): Record<string, TaskKind> {
  const out: Record<string, TaskKind> = {};
  for (const v of values) {
    const i = v.lastIndexOf('=');
    const name = i > 0 ? v.slice(0, i).trim() : '';
    const kind = i > 0 ? v.slice(i + 1).trim() : '';
    if (!name || !TASK_KINDS.includes(kind as TaskKind)) throw errInvalidOption('--task', `"${v}" is not <output>=<kind>`, `Kinds: ${TASK_KINDS.join(', ')}. Example: --task sigmoid_0.tmp_0=map`);
    out[name] = kind as TaskKind;
  }
  return out;
}

/** Reads a charset file: one symbol per line, as PaddleOCR's ppocr_keys_v1.txt. */
export function readCharset(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw errInvalidOption('--charset', `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'Pass a text file with one symbol per line (e.g. ppocr_keys_v1.txt).');
  }
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines[lines.length - 1] === '') lines.pop();
  if (!lines.length) throw errInvalidOption('--charset', `${path} holds no symbols`, 'One symbol per line.');
  return lines;
}

const SATURATING = new Set(['Softmax', 'LogSoftmax']);
/** Ops that end embedding heads (normalized or squashed vectors), not class scores. */
const VECTOR_OPS = new Set(['LpNormalization', 'Div', 'Tanh', 'ReduceMean', 'GlobalAveragePool']);

/**
 * The kind an output's dims and producing op call for. `producer` is the op type (ONNX names:
 * Softmax, Sigmoid, …) when the backend can see it.
 */
export function detectTask(dims: number[], producer?: string, modelInputs: readonly string[] = []): { kind: TaskKind; detectedFrom: string } {
  const shape = `[${dims.join(',')}]`;
  const from = (what: string) => `${producer ? `${producer} output` : 'output'} ${shape}${what}`;
  const last = dims[dims.length - 1] ?? 1;
  if (dims.length === 3 && last >= MIN_LM_VOCABULARY && modelInputs.includes('input_ids')) return { kind: 'language-model', detectedFrom: from(': logits per position of a model fed input_ids') };
  if (producer === 'Sigmoid' && dims.length >= 2) return { kind: 'map', detectedFrom: from('') };
  if (dims.length === 4 && dims[1] === 1 && dims[2] > 1 && dims[3] > 1) return { kind: 'map', detectedFrom: from(': one-channel map') };
  if (dims.length === 3 && last > 1 && (!producer || SATURATING.has(producer))) return { kind: 'sequence', detectedFrom: from(': scores per position') };
  if (dims.length <= 2 && last > 1 && !(producer && VECTOR_OPS.has(producer))) return { kind: 'classes', detectedFrom: from('') };
  return { kind: 'embedding', detectedFrom: from('') };
}

/** Levenshtein distance over code points. */
export function editDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[y.length];
}

/** Greedy CTC: arg-max per position, repeats collapsed, blanks dropped. Returns class indices. */
export function ctcGreedy(scores: ArrayLike<number>, offset: number, steps: number, classes: number, blank: number): number[] {
  const out: number[] = [];
  let prev = -1;
  for (let t = 0; t < steps; t++) {
    const k = argmax(scores, offset + t * classes, classes);
    if (k !== prev && k !== blank) out.push(k);
    prev = k;
  }
  return out;
}

/** Maps decoded class indices to text with a charset (PaddleOCR's convention for the trailing space). */
export function ctcText(indices: number[], classes: number, ctc: CtcOptions): string {
  if (!ctc.charset) return indices.join(' ');
  const symbols = ctc.charset;
  if (classes !== symbols.length + 1 && classes !== symbols.length + 2) {
    throw errInvalidOption('--charset', `the output has ${classes} classes but blank + ${symbols.length} symbols make ${symbols.length + 1}${' (or +1 with a space)'}`, 'Pass the charset the model was trained with (one symbol per line), or check --task.');
  }
  return indices.map((k) => {
    const s = k < ctc.blank ? k : k - 1;
    return s < symbols.length ? symbols[s] : ' ';
  }).join('');
}

/** PaddleOCR's `ignore_space`: `str.replace(" ", "")`, the ASCII space only. */
function withoutSpaces(s: string): string {
  return s.replace(/ /g, '');
}

/** What a sample may carry for task metrics. */
export interface TaskLabel {
  label?: number;
  text?: string;
  /** The model inputs of the sample: language models read `input_ids` and `attention_mask` from them. */
  inputs?: Record<string, Pick<Tensor, 'dims' | 'data'>>;
}

/** log p(target) from one position's scores: log-softmax of logits, or the log of probabilities. */
function logProbability(scores: ArrayLike<number>, off: number, n: number, target: number, probabilities: boolean): number {
  if (probabilities) return Math.log(Math.max(scores[off + target], Number.MIN_VALUE));
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (scores[off + i] > max) max = scores[off + i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(scores[off + i] - max);
  return scores[off + target] - max - Math.log(sum);
}

const MAX_EXAMPLES = 5;

/**
 * Accumulates one output's fidelity (SNR, cosine, errors) and its task metric, sample by sample.
 * Backends create one per output with the output's dims and producer, then call `add`.
 */
export class OutputAccumulator {
  readonly kind: TaskKind;
  readonly detectedFrom: string;
  private readonly fidelity: FidelityAccumulator;
  private rows = 0;
  private usedK = 0;
  private top1 = 0;
  private topk = 0;
  private inter = 0;
  private union = 0;
  private agreePixels = 0;
  private pixels = 0;
  private lines = 0;
  private sameLines = 0;
  private labeledLines = 0;
  private refExact = 0;
  private candExact = 0;
  private refChar = 0;
  private candChar = 0;
  private errSq = 0;
  private refSq = 0;
  private lmPositions = 0;
  private lmAgree = 0;
  private lmScored = 0;
  private refNll = 0;
  private candNll = 0;
  private refHits = 0;
  private candHits = 0;
  /** A Softmax output holds probabilities, not logits (LogSoftmax outputs are log-softmax invariant). */
  private readonly probabilities: boolean;
  /** Decoded text is compared without spaces: asked for, and there is text (a charset) to take them from. */
  private readonly ignoreSpace: boolean;
  private readonly examples: NonNullable<TaskFidelity['examples']> = [];

  constructor(
    readonly output: string,
    first: { dims: number[]; producer?: string; modelInputs?: readonly string[] },
    private readonly options: TaskOptions & { topK?: number } = {},
  ) {
    const forced = options.tasks?.[output];
    const detected = detectTask(first.dims, first.producer, first.modelInputs);
    this.probabilities = first.producer === 'Softmax';
    this.ignoreSpace = Boolean(options.ctc?.ignoreSpace && options.ctc.charset);
    this.kind = forced ?? detected.kind;
    this.detectedFrom = forced ? `--task ${output}=${forced}` : detected.detectedFrom;
    this.fidelity = new FidelityAccumulator(output);
  }

  /** One sample's output: reference and candidate values, the dims they have, the sample's labels. */
  add(reference: ArrayLike<number>, candidate: ArrayLike<number>, dims: number[], label: TaskLabel = {}): void {
    this.fidelity.add(reference, candidate);
    const last = dims[dims.length - 1] ?? reference.length;
    switch (this.kind) {
      case 'classes':
        this.addRows(reference, candidate, last > 1 ? last : reference.length);
        break;
      case 'map': {
        const t = this.options.mapThreshold ?? DEFAULT_MAP_THRESHOLD;
        for (let i = 0; i < reference.length; i++) {
          const r = reference[i] > t;
          const c = candidate[i] > t;
          if (r && c) this.inter++;
          if (r || c) this.union++;
          if (r === c) this.agreePixels++;
        }
        this.pixels += reference.length;
        break;
      }
      case 'sequence': {
        this.addRows(reference, candidate, last);
        const ctc = this.options.ctc;
        if (!ctc) break;
        const steps = dims.length >= 2 ? dims[dims.length - 2] : reference.length / last;
        const compared = this.ignoreSpace ? withoutSpaces : (s: string) => s;
        for (let off = 0; off < reference.length; off += steps * last) {
          const ref = ctcText(ctcGreedy(reference, off, steps, last, ctc.blank), last, ctc);
          const cand = ctcText(ctcGreedy(candidate, off, steps, last, ctc.blank), last, ctc);
          const r = compared(ref);
          const c = compared(cand);
          this.lines++;
          if (r === c) this.sameLines++;
          const text = label.text;
          if (text !== undefined && ctc.charset) {
            const t = compared(text);
            this.labeledLines++;
            if (r === t) this.refExact++;
            if (c === t) this.candExact++;
            this.refChar += 1 - editDistance(r, t) / Math.max(1, [...r].length, [...t].length);
            this.candChar += 1 - editDistance(c, t) / Math.max(1, [...c].length, [...t].length);
          }
          if (this.examples.length < MAX_EXAMPLES) this.examples.push({ ...(text !== undefined ? { label: text } : {}), reference: ref, candidate: cand });
        }
        break;
      }
      case 'embedding':
        for (let i = 0; i < reference.length; i++) {
          this.errSq += (reference[i] - candidate[i]) ** 2;
          this.refSq += reference[i] ** 2;
        }
        break;
      case 'language-model':
        this.addTokens(reference, candidate, dims, label.inputs);
        break;
    }
  }

  /** Next-token metrics of `[N,T,V]` logits against the sample's own `input_ids` shifted by one. */
  private addTokens(reference: ArrayLike<number>, candidate: ArrayLike<number>, dims: number[], inputs: TaskLabel['inputs']): void {
    const ids = inputs?.input_ids;
    const hint = 'Feed token data (.npz with input_ids and attention_mask, docs/datasets.md), or set another kind with --task <output>=sequence.';
    if (!ids) throw errInvalidOption('--task', `${this.output} is judged as a language model, but the sample has no input_ids to take next tokens from`, hint);
    const vocab = dims[dims.length - 1];
    const steps = dims[dims.length - 2];
    const rows = reference.length / (vocab * steps);
    if (dims.length < 2 || ids.data.length !== rows * steps) {
      throw errInvalidOption('--task', `${this.output} has dims [${dims.join(',')}] but input_ids has [${ids.dims.join(',')}]: logits must be [batch, sequence, vocabulary] over the same positions`, hint);
    }
    const mask = inputs?.attention_mask;
    if (mask && mask.data.length !== ids.data.length) throw errInvalidOption('--task', `attention_mask has dims [${mask.dims.join(',')}], input_ids [${ids.dims.join(',')}]`, hint);
    const on = (i: number) => !mask || Number(mask.data[i]) !== 0;
    for (let r = 0; r < rows; r++) {
      for (let t = 0; t < steps; t++) {
        const pos = r * steps + t;
        if (!on(pos)) continue;
        const off = pos * vocab;
        const refTop = argmax(reference, off, vocab);
        const candTop = argmax(candidate, off, vocab);
        this.lmPositions++;
        if (refTop === candTop) this.lmAgree++;
        if (t + 1 >= steps || !on(pos + 1)) continue;
        const target = Number(ids.data[pos + 1]);
        if (!(target >= 0 && target < vocab)) throw errInvalidOption('--task', `input_ids holds token ${target}, outside the ${vocab} logits of ${this.output}`, hint);
        this.lmScored++;
        this.refNll -= logProbability(reference, off, vocab, target, this.probabilities);
        this.candNll -= logProbability(candidate, off, vocab, target, this.probabilities);
        if (refTop === target) this.refHits++;
        if (candTop === target) this.candHits++;
      }
    }
  }

  private addRows(reference: ArrayLike<number>, candidate: ArrayLike<number>, classes: number): void {
    if (classes < 2 || reference.length % classes !== 0) return;
    const k = Math.min(this.options.topK ?? 5, classes);
    this.usedK = k;
    for (let off = 0; off < reference.length; off += classes) {
      const refTop = argmax(reference, off, classes);
      if (argmax(candidate, off, classes) === refTop) this.top1++;
      if (topKIndices(candidate, k, off, classes).includes(refTop)) this.topk++;
      this.rows++;
    }
  }

  result(): OutputFidelity {
    const f = this.fidelity.result();
    const task: TaskFidelity = { kind: this.kind, detectedFrom: this.detectedFrom };
    if ((this.kind === 'classes' || this.kind === 'sequence') && this.rows > 0) {
      // Kept at the top level too, where reports from before task metrics read it.
      f.top1Agreement = this.top1 / this.rows;
      f.topKAgreement = this.topk / this.rows;
      f.topK = this.usedK;
      if (this.kind === 'classes') Object.assign(task, { top1Agreement: f.top1Agreement, topKAgreement: f.topKAgreement, topK: this.usedK });
      else task.positionAgreement = f.top1Agreement;
    }
    if (this.kind === 'map') {
      task.threshold = this.options.mapThreshold ?? DEFAULT_MAP_THRESHOLD;
      task.iou = this.union ? this.inter / this.union : 1;
      task.pixelAgreement = this.pixels ? this.agreePixels / this.pixels : 1;
    }
    if (this.kind === 'sequence' && this.lines > 0) {
      task.lineAgreement = this.sameLines / this.lines;
      if (this.ignoreSpace) task.ignoreSpace = true;
      if (this.labeledLines > 0) {
        const pair = (r: number, c: number): AccuracyPair => ({ reference: r / this.labeledLines, candidate: c / this.labeledLines, dropPoints: ((r - c) / this.labeledLines) * 100 });
        task.lineAccuracy = pair(this.refExact, this.candExact);
        task.charAccuracy = pair(this.refChar, this.candChar);
      }
      task.examples = this.examples;
    }
    if (this.kind === 'embedding') task.relativeError = this.refSq ? Math.sqrt(this.errSq / this.refSq) : this.errSq ? Infinity : 0;
    if (this.kind === 'language-model' && this.lmPositions > 0) {
      task.nextTokenAgreement = this.lmAgree / this.lmPositions;
      // Kept at the top level too, where reports from before task metrics read it.
      f.top1Agreement = task.nextTokenAgreement;
      if (this.lmScored > 0) {
        const reference = Math.exp(this.refNll / this.lmScored);
        const candidate = Math.exp(this.candNll / this.lmScored);
        task.perplexity = { reference, candidate, increasePercent: (candidate / reference - 1) * 100 };
        task.nextTokenAccuracy = { reference: this.refHits / this.lmScored, candidate: this.candHits / this.lmScored, dropPoints: ((this.refHits - this.candHits) / this.lmScored) * 100 };
        task.scoredTokens = this.lmScored;
      }
    }
    f.task = task;
    return f;
  }
}

/** The number that decides an output's verdict, in words: `map IoU 0.962 (threshold 0.5)`. */
export function describeTaskMetric(t: TaskFidelity): string {
  switch (t.kind) {
    case 'classes':
      return t.top1Agreement !== undefined ? `top-1 agreement ${(t.top1Agreement * 100).toFixed(1)}%` : 'class scores';
    case 'map':
      return `map IoU ${t.iou!.toFixed(3)} at threshold ${t.threshold} (pixel agreement ${(t.pixelAgreement! * 100).toFixed(2)}%)`;
    case 'sequence':
      if (t.lineAccuracy) return `line accuracy${spacesNote(t)} ${(t.lineAccuracy.reference * 100).toFixed(1)}% → ${(t.lineAccuracy.candidate * 100).toFixed(1)}% (char ${(t.charAccuracy!.reference * 100).toFixed(1)}% → ${(t.charAccuracy!.candidate * 100).toFixed(1)}%)`;
      if (t.lineAgreement !== undefined) return `decoded lines equal${spacesNote(t)} ${(t.lineAgreement * 100).toFixed(1)}%`;
      return `position agreement ${((t.positionAgreement ?? 0) * 100).toFixed(1)}%`;
    case 'embedding':
      return `relative error ${t.relativeError!.toPrecision(3)}`;
    case 'language-model':
      if (!t.perplexity) return 'no position with a next token to score';
      return `perplexity ${t.perplexity.reference.toFixed(3)} → ${t.perplexity.candidate.toFixed(3)} (${signedPercent(t.perplexity.increasePercent)}) over ${t.scoredTokens} tokens, next-token agreement ${((t.nextTokenAgreement ?? 0) * 100).toFixed(1)}%`;
  }
}

/** ` (spaces ignored)` after a line metric computed with `ignoreSpace`, else nothing. */
export function spacesNote(t: Pick<TaskFidelity, 'ignoreSpace'>): string {
  return t.ignoreSpace ? ' (spaces ignored)' : '';
}

/** `+0.42%` / `−0.10%`. */
export function signedPercent(x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(2)}%`;
}
