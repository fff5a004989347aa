// Finding the best int8 model through the contract alone: sensitivity, derived tables, target search.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, CalibrationMethod, ModelRef, QuantizeOptions, VerifyResult } from './contract';
import type { CalibrationTable } from './calibration-table';
import type { RunContext } from './context';
import type { Dataset, ImagePreprocessing } from './datasets/dataset';
import { errInvalidOption } from './errors';
import { Histogram, chooseRange } from './stats';
import type { OutputFidelity } from './metrics';
import type { TaskOptions } from './tasks';

/** What "better" means: a fidelity, task or accuracy number read off a verification. */
export type MetricKind = 'snr' | 'cosine' | 'top1-drop' | 'top1-agree' | 'iou' | 'pixel-agree' | 'position-agree' | 'line-agree' | 'line-acc-drop' | 'char-acc-drop' | 'rel-error' | 'ppl-increase' | 'next-token-agree';

/** Metrics where lower is better; they take `<=` and are negated by `score`. */
const LOWER_IS_BETTER = new Set<MetricKind>(['top1-drop', 'line-acc-drop', 'char-acc-drop', 'rel-error', 'ppl-increase']);
export const METRIC_KINDS: readonly MetricKind[] = ['snr', 'cosine', 'top1-drop', 'top1-agree', 'iou', 'pixel-agree', 'position-agree', 'line-agree', 'line-acc-drop', 'char-acc-drop', 'rel-error', 'ppl-increase', 'next-token-agree'];

export interface AccuracyTarget {
  metric: MetricKind;
  /** `<=` for drops and errors, `>=` for the rest. */
  op: '>=' | '<=';
  value: number;
  text: string;
}

/**
 * Parses `top1-drop<=0.5`, `snr>=30`, `cosine>=0.999`, `iou>=0.93`, `line-acc-drop<=1`,
 * `ppl-increase<=1`, … Shares (agreements, IoU) are 0..1; drops are percentage points; the
 * perplexity increase is in percent.
 */
export function parseAccuracyTarget(text: string): AccuracyTarget {
  const m = /^\s*([a-z0-9-]+)\s*(>=|<=)\s*(-?\d+(?:\.\d+)?)\s*$/.exec(text);
  if (!m || !METRIC_KINDS.includes(m[1] as MetricKind)) throw errInvalidOption('--accuracy-target', `"${text}" is not METRIC>=X or METRIC<=X`, `Metrics: ${METRIC_KINDS.join(', ')}. Examples: top1-drop<=0.5, snr>=30, iou>=0.93, line-acc-drop<=1`);
  const metric = m[1] as MetricKind;
  const op = m[2] as '>=' | '<=';
  if (LOWER_IS_BETTER.has(metric) !== (op === '<=')) throw errInvalidOption('--accuracy-target', `${metric} takes ${LOWER_IS_BETTER.has(metric) ? '<=' : '>='}`);
  return { metric, op, value: Number(m[3]), text: text.trim() };
}

/** The task metric of one output, as `score` reads it (before negation). */
function taskValue(o: OutputFidelity, metric: MetricKind): number | undefined {
  const t = o.task;
  switch (metric) {
    case 'top1-agree':
      return t?.kind === 'classes' ? t.top1Agreement : undefined;
    case 'iou':
      return t?.iou;
    case 'pixel-agree':
      return t?.pixelAgreement;
    case 'position-agree':
      return t?.positionAgreement;
    case 'line-agree':
      return t?.lineAgreement;
    case 'line-acc-drop':
      return t?.lineAccuracy?.dropPoints;
    case 'char-acc-drop':
      return t?.charAccuracy?.dropPoints;
    case 'rel-error':
      return t?.relativeError;
    case 'ppl-increase':
      return t?.perplexity?.increasePercent;
    case 'next-token-agree':
      return t?.nextTokenAgreement;
    default:
      return undefined;
  }
}

const NEEDS: Partial<Record<MetricKind, string>> = {
  'top1-agree': 'an output judged as class scores',
  iou: 'a probability/score map output (--task <output>=map)',
  'pixel-agree': 'a probability/score map output (--task <output>=map)',
  'position-agree': 'a sequence output ([N,T,C], --task <output>=sequence)',
  'line-agree': 'a sequence output decoded with --ctc',
  'line-acc-drop': 'a sequence output decoded with --ctc --charset and string labels (labels.txt beside the data)',
  'char-acc-drop': 'a sequence output decoded with --ctc --charset and string labels (labels.txt beside the data)',
  'rel-error': 'an embedding/regression output (--task <output>=embedding)',
  'ppl-increase': 'language-model logits ([N,T,V] with input_ids; --task <output>=language-model) and token data',
  'next-token-agree': 'language-model logits ([N,T,V] with input_ids; --task <output>=language-model) and token data',
};

/**
 * The score of a verification under a metric, higher is better (drops and errors are negated).
 * SNR is taken before a saturating output activation when the backend measured it there; task
 * metrics take the worst output that has them.
 */
export function score(v: VerifyResult, metric: MetricKind): number {
  switch (metric) {
    case 'snr':
      return Math.min(...v.outputs.map((o) => o.preActivation?.snrDb ?? o.snrDb));
    case 'cosine':
      return Math.min(...v.outputs.map((o) => o.preActivation?.cosine ?? o.cosine));
    case 'top1-drop':
      if (!v.accuracy) throw errInvalidOption('--metric', 'top1-drop needs a labeled evaluation dataset', 'Use mnist or a labeled image folder for --eval-data, or --metric snr.');
      return -v.accuracy.dropPoints;
    default: {
      const values = v.outputs.map((o) => taskValue(o, metric)).filter((x): x is number => x !== undefined);
      if (!values.length) throw errInvalidOption('--metric', `${metric} needs ${NEEDS[metric]}; this verification has ${v.outputs.map((o) => `${o.output}: ${o.task?.kind ?? 'no task'}`).join(', ')}`, 'Pick a metric the outputs have, or set the output kind with --task.');
      return LOWER_IS_BETTER.has(metric) ? -Math.max(...values) : Math.min(...values);
    }
  }
}

export function meets(v: VerifyResult, t: AccuracyTarget): boolean {
  const s = score(v, t.metric);
  return LOWER_IS_BETTER.has(t.metric) ? -s <= t.value : s >= t.value;
}

/** Recomputes every range with another method from the histograms a table kept. */
export function deriveTable(table: CalibrationTable, method: CalibrationMethod, opts: { percentile?: number } = {}): CalibrationTable {
  const tensors: CalibrationTable['tensors'] = {};
  for (const [name, t] of Object.entries(table.tensors)) {
    if (method !== 'minmax' && !t.histogram) throw errInvalidOption('method', `the table has no histogram for ${name}; calibrate with keepHistograms`);
    const hist = t.histogram ? Histogram.fromJSON(t.histogram) : undefined;
    tensors[name] = { min: t.min, max: t.max, range: chooseRange(t.min, t.max, hist, { method, percentile: opts.percentile, activationType: (table.methodOptions.activationType as never) ?? 'uint8' }) };
  }
  return { ...table, method, methodOptions: { ...table.methodOptions, percentile: opts.percentile, derivedFrom: table.method }, tensors };
}

export interface EvalPlan {
  dataset: Dataset;
  samples: number;
  metric: MetricKind;
  /** How outputs are interpreted (`--task`, `--ctc`, `--map-threshold`). */
  task?: TaskOptions;
}

/**
 * What every trial of a search shares, handed to a runner that may run the trials elsewhere
 * (`QuantizeRunOptions.trialRunner`).
 */
export interface TrialPlan {
  backend: Backend;
  model: ModelRef;
  /** The options every variant starts from; a variant sets its own output, exclusions and 16-bit nodes. */
  options: QuantizeOptions;
  evaluation: EvalPlan;
  /** How to open the evaluation data in another process: its spec and preprocessing (absent when the data is a Dataset object). */
  evaluationSource?: { spec: string; image?: Partial<ImagePreprocessing>; inputShapes?: string[] };
}

/** One variant of a quantize recipe: its calibration table, and the nodes kept in float or given 16-bit activations. */
export interface TrialVariant {
  table: CalibrationTable | undefined;
  excludeNodes: string[];
  activation16Nodes?: string[];
  /** Short text for progress lines (`keep conv2 in float`). */
  label: string;
}

/** A scored variant: the verification, its score under the plan's metric, and the nodes that ended up quantized. */
export interface TrialScore {
  verify: VerifyResult;
  score: number;
  quantized: string[];
}

/**
 * Scores variants of one quantize recipe. `Trial` runs them here, one after another; a runner over
 * a job queue spreads them over workers. The search algorithms hand over every variant they know
 * they need at once, so a parallel runner can run them together.
 */
export interface TrialRunner {
  /**
   * Scores the variants; results in variant order. With `until`, the runner may stop after the
   * first result that satisfies it (the list then ends there) — or score the rest anyway: callers
   * read the results only up to that first one.
   */
  runAll(variants: TrialVariant[], until?: (r: TrialScore) => boolean): Promise<TrialScore[]>;
  /** What the runner wants recorded in the report (e.g. which workers ran the trials). */
  describe?(): Record<string, unknown> | undefined;
  dispose?(): void;
}

/** The results up to and including the first that satisfies `until` (all of them when none does). */
function upToFirst(results: TrialScore[], until: (r: TrialScore) => boolean): TrialScore[] {
  const i = results.findIndex(until);
  return i < 0 ? results : results.slice(0, i + 1);
}

/** Quantizes with some nodes kept in float and scores the result. Files go to a scratch folder. */
export class Trial implements TrialRunner {
  private readonly dir = mkdtempSync(join(tmpdir(), 'qforge-trial-'));
  private n = 0;
  constructor(
    private readonly backend: Backend,
    private readonly model: ModelRef,
    private readonly base: QuantizeOptions,
    private readonly evalPlan: EvalPlan,
    private readonly ctx: RunContext,
  ) {}

  async run(table: CalibrationTable | undefined, excludeNodes: string[], activation16Nodes: string[] = []): Promise<TrialScore> {
    const output = join(this.dir, `trial-${this.n++}${this.model.format === 'onnx' ? '.onnx' : '.out'}`);
    const q = await this.backend.quantize(this.model, table, { ...this.base, output, excludeNodes, activation16Nodes }, this.ctx);
    const verify = await this.backend.verify(this.model, q.model, this.evalPlan.dataset, { samples: this.evalPlan.samples, thresholds: {}, ...this.evalPlan.task }, this.ctx);
    rmSync(output, { force: true });
    return { verify, score: score(verify, this.evalPlan.metric), quantized: q.decisions.filter((d) => d.quantized).map((d) => d.node) };
  }

  /** One after another, stopping at the first result that satisfies `until`. */
  async runAll(variants: TrialVariant[], until?: (r: TrialScore) => boolean): Promise<TrialScore[]> {
    const out: TrialScore[] = [];
    for (const [i, v] of variants.entries()) {
      if (variants.length > 1) this.ctx.progress({ phase: 'verify', current: i + 1, total: variants.length, message: v.label });
      const r = await this.run(v.table, v.excludeNodes, v.activation16Nodes ?? []);
      out.push(r);
      if (until?.(r)) break;
    }
    return out;
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface LayerSensitivity {
  node: string;
  /** Score with only this node quantized (everything else float). */
  onlyThis: number;
  /** Score with everything quantized except this node. */
  allButThis: number;
  /** allButThis − baseline: how much keeping this node in float recovers. */
  recovery: number;
}

export interface SensitivityResult {
  metric: MetricKind;
  baseline: number;
  float: string;
  layers: LayerSensitivity[];
  /**
   * Spearman rank correlation between the cheap proxy (damage when quantized alone) and the
   * direct measurement (recovery when kept in float); near 1 means the proxy ranks layers right.
   */
  rankAgreement?: number;
}

/** Spearman's rank correlation (average ranks for ties). */
export function spearman(a: number[], b: number[]): number {
  const rank = (v: number[]) => {
    const idx = v.map((x, i) => [x, i] as const).sort((p, q) => p[0] - q[0]);
    const r = new Array<number>(v.length);
    for (let i = 0; i < idx.length; ) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
      for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const n = a.length;
  const mean = (n - 1) / 2;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < n; i++) {
    num += (ra[i] - mean) * (rb[i] - mean);
    da += (ra[i] - mean) ** 2;
    db += (rb[i] - mean) ** 2;
  }
  return da && db ? num / Math.sqrt(da * db) : NaN;
}

/**
 * Per quantizable node: the score with only it quantized, and with all but it quantized.
 * Ranked by recovery (the float fallback that helps most first). Two rounds of trials: everything
 * quantized (which names the nodes), then every node's variants at once.
 */
export async function analyzeSensitivity(trial: TrialRunner, table: CalibrationTable | undefined, metric: MetricKind, ctx: RunContext, onlyThis = true): Promise<SensitivityResult> {
  const [all] = await trial.runAll([{ table, excludeNodes: [], label: 'all quantized' }]);
  const nodes = all.quantized;
  ctx.logger.debug(`sensitivity: ${nodes.length} quantized node(s), ${nodes.length * (onlyThis ? 2 : 1)} trial(s)`);
  const variants = nodes.flatMap((node): TrialVariant[] => [
    { table, excludeNodes: [node], label: `keep ${node} in float` },
    ...(onlyThis ? [{ table, excludeNodes: nodes.filter((n) => n !== node), label: `only ${node} quantized` }] : []),
  ]);
  const results = await trial.runAll(variants);
  const per = onlyThis ? 2 : 1;
  const layers: LayerSensitivity[] = nodes.map((node, i) => {
    const allBut = results[i * per];
    const only = onlyThis ? results[i * per + 1] : undefined;
    return { node, onlyThis: only?.score ?? NaN, allButThis: allBut.score, recovery: allBut.score - all.score };
  });
  layers.sort((a, b) => b.recovery - a.recovery);
  const rankAgreement = onlyThis && layers.length > 2 ? spearman(layers.map((l) => -l.onlyThis), layers.map((l) => l.recovery)) : undefined;
  return { metric, baseline: all.score, float: 'keeping the node in float', layers, rankAgreement };
}

export interface SearchStep {
  step: string;
  method: CalibrationMethod;
  samples: number;
  floatNodes: string[];
  score: number;
  met: boolean;
}

export interface SearchResult {
  target: string;
  /** What started the search: `--accuracy-target` (absent) or a failed verdict (`recover`). */
  trigger?: 'target' | 'verdict';
  met: boolean;
  method: CalibrationMethod;
  samples: number;
  /** What the nodes in `floatNodes` got: float (default) or 16-bit activations (W8A16). */
  precision?: 'float' | 'a16';
  /** Nodes kept in higher precision (see `precision`). */
  floatNodes: string[];
  quantizableNodes: number;
  path: SearchStep[];
}

/**
 * Accuracy-aware search: calibration methods first (from one histogram calibration), then keeping
 * the most sensitive nodes in float one more at a time, until the target holds or the budget
 * (`maxFloatShare` of the quantizable nodes) is spent. Each stage's candidates go to the runner
 * together; only results up to the first that meets the target count, so a runner that scores all
 * of them (in parallel) and one that stops early give the same result.
 */
export async function searchForTarget(
  trial: TrialRunner,
  tableWithHistograms: CalibrationTable,
  target: AccuracyTarget,
  options: {
    methods: CalibrationMethod[];
    maxFloatShare: number;
    fallback?: 'float' | 'a16';
    /** What "met" means when it is more than the target's metric (the whole verdict, for recovery); the metric still ranks. */
    accept?: (v: VerifyResult) => boolean;
  },
  ctx: RunContext,
): Promise<SearchResult> {
  const precision = options.fallback ?? 'float';
  const met = (r: TrialScore) => (options.accept ? options.accept(r.verify) : meets(r.verify, target));
  const path: SearchStep[] = [];
  const tables = options.methods.map((method) => deriveTable(tableWithHistograms, method));
  const byMethod = upToFirst(await trial.runAll(options.methods.map((method, i) => ({ table: tables[i], excludeNodes: [], label: `method ${method}` })), met), met);
  let best: { method: CalibrationMethod; score: number; table: CalibrationTable; quantized: string[] } | undefined;
  for (const [i, r] of byMethod.entries()) {
    const method = options.methods[i];
    path.push({ step: `method ${method}`, method, samples: tables[i].sampleCount, floatNodes: [], score: r.score, met: met(r) });
    if (!best || r.score > best.score) best = { method, score: r.score, table: tables[i], quantized: r.quantized };
    if (met(r)) return { target: target.text, met: true, method, samples: tables[i].sampleCount, floatNodes: [], quantizableNodes: r.quantized.length, path };
  }
  const chosen = best!;
  // At least one node stays quantized: a model with every node in float is not a quantization.
  const budget = Math.min(chosen.quantized.length - 1, Math.floor(chosen.quantized.length * options.maxFloatShare));
  if (budget > 0) {
    const sens = await analyzeSensitivity(trial, chosen.table, target.metric, ctx, false);
    // Step k keeps the k most sensitive nodes in float (or at 16-bit activations).
    const steps = sens.layers.slice(0, budget).map((layer, k) => ({ layer, nodes: sens.layers.slice(0, k + 1).map((l) => l.node) }));
    const variants = steps.map(({ layer, nodes }): TrialVariant => ({
      table: chosen.table,
      excludeNodes: precision === 'a16' ? [] : nodes,
      ...(precision === 'a16' ? { activation16Nodes: nodes } : {}),
      label: `keep ${layer.node} in ${precision === 'a16' ? '16-bit activations' : 'float'}`,
    }));
    const results = upToFirst(await trial.runAll(variants, met), met);
    for (const [k, r] of results.entries()) {
      const floatNodes = steps[k].nodes;
      path.push({ step: variants[k].label, method: chosen.method, samples: chosen.table.sampleCount, floatNodes, score: r.score, met: met(r) });
      if (met(r)) return { target: target.text, met: true, method: chosen.method, samples: chosen.table.sampleCount, precision, floatNodes, quantizableNodes: chosen.quantized.length, path };
    }
  }
  // Budget spent: report the best point reached, honestly marked as not meeting the target.
  const bestStep = path.reduce((a, b) => (b.score > a.score ? b : a));
  return { target: target.text, met: false, method: bestStep.method, samples: bestStep.samples, precision, floatNodes: bestStep.floatNodes, quantizableNodes: chosen.quantized.length, path };
}
