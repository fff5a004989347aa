// Finding the best int8 model through the contract alone: sensitivity, derived tables, target search.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, CalibrationMethod, ModelRef, QuantizeOptions, VerifyResult } from './contract';
import type { CalibrationTable } from './calibration-table';
import type { RunContext } from './context';
import type { Dataset } from './datasets/dataset';
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

/** Quantizes with some nodes kept in float and scores the result. Files go to a scratch folder. */
export class Trial {
  private readonly dir = mkdtempSync(join(tmpdir(), 'qforge-trial-'));
  private n = 0;
  constructor(
    private readonly backend: Backend,
    private readonly model: ModelRef,
    private readonly base: QuantizeOptions,
    private readonly evalPlan: EvalPlan,
    private readonly ctx: RunContext,
  ) {}

  async run(table: CalibrationTable | undefined, excludeNodes: string[], activation16Nodes: string[] = []): Promise<{ verify: VerifyResult; score: number; quantized: string[] }> {
    const output = join(this.dir, `trial-${this.n++}${this.model.format === 'onnx' ? '.onnx' : '.out'}`);
    const q = await this.backend.quantize(this.model, table, { ...this.base, output, excludeNodes, activation16Nodes }, this.ctx);
    const verify = await this.backend.verify(this.model, q.model, this.evalPlan.dataset, { samples: this.evalPlan.samples, thresholds: {}, ...this.evalPlan.task }, this.ctx);
    rmSync(output, { force: true });
    return { verify, score: score(verify, this.evalPlan.metric), quantized: q.decisions.filter((d) => d.quantized).map((d) => d.node) };
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
 * Ranked by recovery (the float fallback that helps most first).
 */
export async function analyzeSensitivity(trial: Trial, table: CalibrationTable | undefined, metric: MetricKind, ctx: RunContext, onlyThis = true): Promise<SensitivityResult> {
  const all = await trial.run(table, []);
  const nodes = all.quantized;
  const layers: LayerSensitivity[] = [];
  let i = 0;
  for (const node of nodes) {
    ctx.progress({ phase: 'verify', current: ++i, total: nodes.length, message: node });
    const allBut = await trial.run(table, [node]);
    const only = onlyThis ? await trial.run(table, nodes.filter((n) => n !== node)) : undefined;
    layers.push({ node, onlyThis: only?.score ?? NaN, allButThis: allBut.score, recovery: allBut.score - all.score });
  }
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
 * the most sensitive nodes in float one at a time, until the target holds or the budget
 * (`maxFloatShare` of the quantizable nodes) is spent.
 */
export async function searchForTarget(
  trial: Trial,
  tableWithHistograms: CalibrationTable,
  target: AccuracyTarget,
  options: { methods: CalibrationMethod[]; maxFloatShare: number; fallback?: 'float' | 'a16' },
  ctx: RunContext,
): Promise<SearchResult> {
  const precision = options.fallback ?? 'float';
  const path: SearchStep[] = [];
  let best: { method: CalibrationMethod; score: number; table: CalibrationTable; verify: VerifyResult; quantized: string[] } | undefined;
  for (const method of options.methods) {
    const table = deriveTable(tableWithHistograms, method);
    const r = await trial.run(table, []);
    const met = meets(r.verify, target);
    path.push({ step: `method ${method}`, method, samples: table.sampleCount, floatNodes: [], score: r.score, met });
    if (!best || r.score > best.score) best = { method, score: r.score, table, verify: r.verify, quantized: r.quantized };
    if (met) return { target: target.text, met, method, samples: table.sampleCount, floatNodes: [], quantizableNodes: r.quantized.length, path };
  }
  const chosen = best!;
  const budget = Math.floor(chosen.quantized.length * options.maxFloatShare);
  const floatNodes: string[] = [];
  if (budget > 0) {
    const sens = await analyzeSensitivity(trial, chosen.table, target.metric, ctx, false);
    for (const layer of sens.layers.slice(0, budget)) {
      floatNodes.push(layer.node);
      const r = precision === 'a16' ? await trial.run(chosen.table, [], [...floatNodes]) : await trial.run(chosen.table, [...floatNodes]);
      const met = meets(r.verify, target);
      path.push({ step: `keep ${layer.node} in ${precision === 'a16' ? '16-bit activations' : 'float'}`, method: chosen.method, samples: chosen.table.sampleCount, floatNodes: [...floatNodes], score: r.score, met });
      if (met) return { target: target.text, met, method: chosen.method, samples: chosen.table.sampleCount, precision, floatNodes, quantizableNodes: chosen.quantized.length, path };
    }
  }
  // Budget spent: report the best point reached, honestly marked as not meeting the target.
  const bestStep = path.reduce((a, b) => (b.score > a.score ? b : a));
  return { target: target.text, met: false, method: bestStep.method, samples: bestStep.samples, precision, floatNodes: bestStep.floatNodes, quantizableNodes: chosen.quantized.length, path };
}
