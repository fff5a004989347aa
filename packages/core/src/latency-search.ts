// Latency-aware choices: time candidate quantizations on this machine, keep the fastest that still passes verification, and never write int8 that is slower than fp32.
import { rmSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Backend, BenchmarkResult, ModelRef, OpFamily, QuantizeOptions, QuantizeResult, VerifyOptions, VerifyResult } from './contract';
import type { CalibrationTable } from './calibration-table';
import { throwIfAborted, type RunContext } from './context';
import { toQforgeError } from './errors';
import type { Dataset } from './datasets/dataset';
import { formatSpeedup, type SpeedupEstimate } from './bench-stats';
import { sha256File } from './files';
import { score } from './tuning';
import { failedTargets } from './verdict';

/** Time the search may take by default (quantize + verify + timing per candidate), in ms. */
export const DEFAULT_LATENCY_BUDGET_MS = 300_000;

/**
 * Shares of the opt-in nodes' output elements kept in float by the per-node step, smallest tensors
 * first, tried in order until one passes. A float node on a small tensor costs little (PP-OCRv4 det:
 * the element-wise nodes of the last backbone stages are a tenth of the family's elements).
 */
export const FLOAT_SHARES = [0.1, 0.25, 0.5] as const;

/** One timed candidate. */
export interface LatencyStep {
  /** What was tried: `all opt-in families`, `+element-wise`, `−concat`, `int8 storage only`. */
  candidate: string;
  /** Opt-in families on in this candidate. */
  families: string[];
  storageOnly?: boolean;
  /** Calibration method of the candidate's table when it differs from the run's. */
  method?: string;
  /** Nodes of the opt-in families this candidate keeps in float (the per-node step). */
  floatNodes?: string[];
  /** What it was timed against, alternately in one benchmark: `fp32` or the choice kept so far. */
  against: string;
  /** Median latency of the candidate and of what it was timed against, in ms. */
  medianMs: number;
  againstMedianMs: number;
  /** Speedup of the candidate over `against` (ratio of medians, paired bootstrap interval). */
  speedup: SpeedupEstimate;
  /** Verification on the evaluation data passed (the run's thresholds and task metrics). */
  passed: boolean;
  kept: boolean;
  reason: string;
}

/** The `latencyChoices` section of a run report. */
export interface LatencyChoices {
  threads: number;
  budgetMs: number;
  durationMs: number;
  /** Opt-in families the written model quantizes. */
  families: string[];
  /** The written model stores int8 weights dequantized at load and computes in float (fp32 speed). */
  storageOnly: boolean;
  /** Calibration method of the written model when the search changed it. */
  method?: string;
  /** Nodes of the opt-in families the written model keeps in float (the per-node step), besides `--exclude-nodes`. */
  floatNodes?: string[];
  /** The choice kept, timed against fp32 by the search. */
  vsFp32?: SpeedupEstimate;
  steps: LatencyStep[];
  notes: string[];
}

/** How one candidate is timed: `primary` against `compare` in alternated runs. Injected in tests. */
export type LatencyTimer = (primary: ModelRef, compare: ModelRef, ctx: RunContext) => Promise<{ speedup: SpeedupEstimate; primaryMs: number; compareMs: number }>;

/** The backend's own benchmark with a shorter budget than the final one: enough runs for a stable median. */
export function benchmarkTimer(backend: Backend, o: { threads: number; dataset?: Dataset; minTimeMs?: number; runs?: number }): LatencyTimer {
  return async (primary, compare, ctx) => {
    const b: BenchmarkResult = await backend.benchmark(primary, { threads: o.threads, warmup: 5, runs: o.runs ?? 30, minTimeMs: o.minTimeMs ?? 1000, compare, dataset: o.dataset }, ctx);
    if (!b.speedupEstimate || !b.compare) throw new Error(`backend ${backend.id} returned no paired timing`);
    return { speedup: b.speedupEstimate, primaryMs: b.primary.latencyMs.p50, compareMs: b.compare.latencyMs.p50 };
  };
}

/** Another calibration of the same data, computed only when a candidate needs it. */
export interface AlternativeTable {
  method: string;
  table: () => Promise<CalibrationTable>;
}

export interface LatencySearchInput {
  model: ModelRef;
  table?: CalibrationTable;
  /**
   * Tables of other calibration methods, in the order to try: when the first candidate (all opt-in
   * families) fails verification with the run's table, it is retried with each until one passes.
   * Ranges the default families tolerate can be too coarse once every op is int8 (PP-OCRv4 det:
   * minmax passes with the defaults, all families need mse). Empty when `--method`, a
   * calibration table or an earlier search (recovery, `--accuracy-target`) fixed the ranges.
   */
  alternatives?: AlternativeTable[];
  /** The recipe of the run so far (`opTypes` empty: the backend's default set). */
  options: QuantizeOptions;
  quantized: QuantizeResult;
  verify: VerifyResult;
  evaluation: { dataset: Dataset; options: VerifyOptions; workDir: string };
  threads: number;
  /** @defaultValue DEFAULT_LATENCY_BUDGET_MS */
  budgetMs?: number;
  /** Families present in the model, by op type count (ModelInfo.opHistogram). */
  opHistogram: Record<string, number>;
  timer: LatencyTimer;
  /** @defaultValue Date.now */
  clock?: () => number;
}

export interface LatencySearchResult {
  quantized: QuantizeResult;
  verify: VerifyResult;
  options: QuantizeOptions;
  /** The table the written model was quantized with (another method's when `choices.method` is set). */
  table?: CalibrationTable;
  choices: LatencyChoices;
  /** What the verdict must say (a fallback, or int8 slower than fp32 with none). */
  verdictNotes: string[];
}

interface Choice {
  families: string[];
  storageOnly: boolean;
  table?: CalibrationTable;
  /** Set when `table` is an alternative's. */
  method?: string;
  /** Opt-in nodes kept in float by the per-node step. */
  floatNodes: string[];
  quantized: QuantizeResult;
  verify: VerifyResult;
  label: string;
}

const key = (families: readonly string[]) => [...families].sort().join('+');

/**
 * Greedy search over the backend's opt-in op families, then the fp32 check:
 * 1. all opt-in families present in the model on, against the default set; when that fails
 *    verification, retried with the `alternatives` tables, then with the opt-in nodes on the
 *    smallest tensors in float (the per-node step);
 * 2. each family toggled against the choice kept so far;
 * a candidate is kept only when verification passes and it is measurably faster (the whole 95%
 * interval of the speedup above 1). Then the kept choice is timed against fp32: when it is
 * measurably slower (interval entirely below 1), the backend writes int8-stored weights
 * dequantized at load (`storageOnly`), which run at fp32 speed, and the notes say so.
 * Families are tried only when `opTypes` is the default set: an explicit `--op-types` is kept.
 */
export async function chooseForLatency(backend: Backend, input: LatencySearchInput, ctx: RunContext): Promise<LatencySearchResult> {
  const clock = input.clock ?? Date.now;
  const started = clock();
  const budgetMs = input.budgetMs ?? DEFAULT_LATENCY_BUDGET_MS;
  const families = backend.capabilities.opFamilies ?? [];
  const defaults = families.filter((f) => f.byDefault).flatMap((f) => f.opTypes);
  const present = (f: OpFamily) => f.opTypes.some((t) => (input.opHistogram[t] ?? 0) > 0);
  const optIn = families.filter((f) => !f.byDefault && present(f)).map((f) => f.family);
  const familyOpTypes = (on: readonly string[]) => families.filter((f) => on.includes(f.family)).flatMap((f) => f.opTypes);
  const opTypesFor = (on: readonly string[]) => (on.length ? [...defaults, ...familyOpTypes(on)] : []);
  const ext = extname(input.options.output) || '.onnx';
  const steps: LatencyStep[] = [];
  const notes: string[] = [];
  const verdictNotes: string[] = [];
  const files: string[] = [];
  let serial = 0;
  const excludeFor = (floatNodes: readonly string[]) => (floatNodes.length ? [...new Set([...(input.options.excludeNodes ?? []), ...floatNodes])] : input.options.excludeNodes);
  // Op type of each node the per-node step kept in float: a node whose family is off is not a float choice any more.
  const floatOpType = new Map<string, string>();
  const build = async (on: string[], storageOnly: boolean, label: string, table: CalibrationTable | undefined, method?: string, floatNodesAsked: string[] = []): Promise<Choice> => {
    throwIfAborted(ctx, 'latency search');
    const live = new Set(familyOpTypes(on));
    const floatNodes = floatNodesAsked.filter((n) => live.has(floatOpType.get(n) ?? ''));
    const output = join(input.evaluation.workDir, `latency-candidate-${++serial}${ext}`);
    files.push(output);
    const options: QuantizeOptions = { ...input.options, opTypes: opTypesFor(on), excludeNodes: excludeFor(floatNodes), storageOnly, output };
    const quantized = await backend.quantize(input.model, table, options, ctx);
    const verify = await backend.verify(input.model, quantized.model, input.evaluation.dataset, input.evaluation.options, ctx);
    return { families: on, storageOnly, quantized, verify, label, table, method, floatNodes };
  };
  const time = async (a: Choice, b: Choice | 'fp32') => {
    const bRef = b === 'fp32' ? input.model : b.quantized.model;
    return input.timer(a.quantized.model, bRef, ctx);
  };
  const outOfTime = () => clock() - started > budgetMs;

  let current: Choice = { families: [], storageOnly: false, quantized: input.quantized, verify: input.verify, label: 'default op families', table: input.table, floatNodes: [] };
  const step = (c: Choice, t: Awaited<ReturnType<typeof time>>): boolean => {
    const faster = t.speedup.low > 1;
    const kept = c.verify.passed && faster;
    const reason = !c.verify.passed ? `fails verification (${c.verify.failures[0] ?? 'thresholds not met'})` : faster ? 'passes verification and is measurably faster' : 'not measurably faster';
    steps.push({ candidate: c.label, families: c.families, ...(c.method ? { method: c.method } : {}), ...(c.floatNodes.length ? { floatNodes: c.floatNodes } : {}), against: current.label, medianMs: t.primaryMs, againstMedianMs: t.compareMs, speedup: t.speedup, passed: c.verify.passed, kept, reason });
    return kept;
  };
  /**
   * The per-node step, when every opt-in family in int8 fails with every table tried: keep in float
   * the opt-in nodes on the smallest tensors (where float costs least), a growing share of their
   * elements at a time, until verification passes; kept only when also measurably faster than the
   * choice so far. Sizes come from the per-layer verification of the failed candidate.
   */
  const perNode = async (failed: Choice[], on: string[], label: string): Promise<Choice | undefined> => {
    // The table that came closest under the limit the verdict missed.
    const missed = failedTargets(failed[0].verify)[0];
    const closeness = (c: Choice) => {
      try {
        return missed ? score(c.verify, missed[0]) : 0;
      } catch {
        return -Infinity;
      }
    };
    // Ties (or no target to score) go to the earlier table: the run's own first.
    const best = failed.reduce((a, b) => (closeness(b) > closeness(a) ? b : a));
    const types = new Set(familyOpTypes(on));
    const decisions = best.quantized.decisions;
    const size = new Map<string, number>();
    for (const l of best.verify.layers ?? []) if (l.node && l.elements) size.set(l.node, Math.max(size.get(l.node) ?? 0, l.elements));
    if (!size.size) {
      notes.push(`per-node step skipped: the verification has no per-layer tensor sizes (per-layer verification off, or backend ${backend.id} does not report them)`);
      return undefined;
    }
    // A node whose output has no quantized copy of its own (hard-swish's +3 feeding Clip) takes the
    // size of the next node in graph order that has one, else of the previous.
    const elements = decisions.map((d) => size.get(d.node));
    for (let k = elements.length - 2; k >= 0; k--) elements[k] ??= elements[k + 1];
    for (let k = 1; k < elements.length; k++) elements[k] ??= elements[k - 1];
    const sized = decisions.map((d, k) => ({ node: d.node, opType: d.opType, quantized: d.quantized, k, elements: elements[k] ?? 0 }));
    // Smallest first; equal sizes: later nodes first.
    const nodes = sized.filter((d) => d.quantized && types.has(d.opType)).sort((a, b) => a.elements - b.elements || b.k - a.k);
    const total = nodes.reduce((a, d) => a + d.elements, 0);
    if (nodes.length < 2 || total <= 0) {
      notes.push(`per-node step skipped: ${nodes.length} opt-in node(s) quantized, nothing to choose between`);
      return undefined;
    }
    for (const d of nodes) floatOpType.set(d.node, d.opType);
    let previous = 0;
    for (const share of FLOAT_SHARES) {
      let n = 0;
      for (let sum = 0; n < nodes.length - 1 && sum + nodes[n].elements <= share * total; n++) sum += nodes[n].elements;
      // At least one node, at least one left in int8.
      n = Math.max(n, 1);
      if (n <= previous) continue;
      if (outOfTime()) {
        notes.push(previous ? `time budget used up: the per-node step stopped before keeping ${Math.round(share * 100)}% of the opt-in elements in float` : 'time budget used up: the per-node step did not run');
        return undefined;
      }
      previous = n;
      const sum = nodes.slice(0, n).reduce((a, d) => a + d.elements, 0);
      const floatNodes = nodes.slice(0, n).map((d) => d.node);
      const c = await build(on, false, `${label}${best.method ? `, ${best.method} calibration` : ''}, ${n} of ${nodes.length} opt-in nodes in float (smallest tensors, ${Math.round((100 * sum) / total)}% of their elements)`, best.table, best.method, floatNodes);
      const t = await time(c, current);
      if (step(c, t)) return c;
      // Passes but is not faster: more nodes in float will not be faster either.
      if (c.verify.passed) return undefined;
    }
    return undefined;
  };
  if (input.options.opTypes.length) notes.push(`op families fixed by --op-types (${input.options.opTypes.join(',')}): only the fp32 check ran`);
  else if (!optIn.length) notes.push('no opt-in op family occurs in this model: only the fp32 check ran');
  else {
    const tried = new Set<string>([key([])]);
    const candidates: string[][] = [optIn, ...optIn.map((f) => [f])];
    for (let i = 0; i < candidates.length; i++) {
      // Steps after the first toggle one family against the choice kept so far.
      const on = i === 0 ? candidates[0] : current.families.includes(candidates[i][0]) ? current.families.filter((f) => f !== candidates[i][0]) : [...current.families, candidates[i][0]];
      if (tried.has(key(on))) continue;
      if (outOfTime()) {
        notes.push(`time budget of ${(budgetMs / 1000).toFixed(0)} s used up: ${candidates.length - i} candidate(s) not tried`);
        break;
      }
      tried.add(key(on));
      const label = i === 0 ? `all opt-in families (${optIn.join(', ')})` : `${on.length > current.families.length ? '+' : '−'}${candidates[i][0]}`;
      const c = await build(on, false, label, current.table, current.method, current.floatNodes);
      if (step(c, await time(c, current))) current = c;
      else if (i === 0 && !c.verify.passed) {
        // Every family in int8 may need finer ranges than the defaults did: retry with the other methods.
        const failed: Choice[] = [c];
        let passedSlower = false;
        const alts = input.alternatives ?? [];
        for (const [k, alt] of alts.entries()) {
          if (outOfTime()) {
            notes.push(`time budget used up: calibration method(s) ${alts.slice(k).map((x) => x.method).join(', ')} not tried`);
            break;
          }
          let altTable: CalibrationTable;
          try {
            altTable = await alt.table();
          } catch (e) {
            // A method that cannot be derived ends the retry, not the run.
            const err = toQforgeError(e);
            if (err.code === 'E_ABORTED') throw e;
            notes.push(`calibration with ${alt.method} failed (${err.message}): not tried`);
            break;
          }
          const a = await build(on, false, `${label}, ${alt.method} calibration`, altTable, alt.method);
          if (step(a, await time(a, current))) {
            current = a;
            break;
          }
          if (a.verify.passed) {
            passedSlower = true; // passes but is not faster: another method or float nodes will not be faster either
            break;
          }
          failed.push(a);
        }
        // Still failing with every table (and the defaults pass): some opt-in nodes go back to float.
        if (!passedSlower && current.families.length === 0 && current.verify.passed) {
          const refined = await perNode(failed, on, label);
          if (refined) current = refined;
        }
      }
    }
  }

  // The fp32 check: never write a model measurably slower than its input without trying the fallback.
  const vs = await time(current, 'fp32');
  let vsFp32 = vs.speedup;
  steps.push({ candidate: current.label, families: current.families, ...(current.method ? { method: current.method } : {}), ...(current.floatNodes.length ? { floatNodes: current.floatNodes } : {}), against: 'fp32', medianMs: vs.primaryMs, againstMedianMs: vs.compareMs, speedup: vs.speedup, passed: current.verify.passed, kept: true, reason: 'the choice kept, timed against fp32' });
  if (vs.speedup.high < 1) {
    if (backend.capabilities.storageOnly) {
      const fallback = await build([], true, 'int8 storage only', input.table);
      const tf = await time(fallback, 'fp32');
      // Verification of the fallback sees only weight rounding; it replaces a slower int8 model unless it fails where int8 passed.
      const take = fallback.verify.passed || !current.verify.passed;
      steps[steps.length - 1].kept = !take;
      steps.push({ candidate: fallback.label, families: [], storageOnly: true, against: 'fp32', medianMs: tf.primaryMs, againstMedianMs: tf.compareMs, speedup: tf.speedup, passed: fallback.verify.passed, kept: take, reason: take ? 'int8 kernels are slower than fp32 here: weights stored int8, dequantized once at load, float compute' : 'fails verification where int8 passed' });
      if (take) {
        verdictNotes.push(`int8 kernels are slower than fp32 here (${formatSpeedup(vs.speedup)}): wrote int8-stored weights dequantized at load, which compute in float like fp32 (measured ${formatSpeedup(tf.speedup)} vs fp32)`);
        current = fallback;
        vsFp32 = tf.speedup;
      }
    } else verdictNotes.push(`int8 is slower than fp32 here (${formatSpeedup(vs.speedup)}) and backend ${backend.id} has no storage-only fallback`);
  }

  // The choice is written where the run expects its model; quantization is deterministic, so the
  // verification of the candidate holds unless the bytes differ.
  const options: QuantizeOptions = { ...input.options, opTypes: current.families.length ? opTypesFor(current.families) : input.options.opTypes, excludeNodes: excludeFor(current.floatNodes), storageOnly: current.storageOnly || undefined };
  let quantized = input.quantized;
  let verify = input.verify;
  if (current.quantized !== input.quantized) {
    quantized = await backend.quantize(input.model, current.table, options, ctx);
    const same = (await sha256File(quantized.model.path)) === (await sha256File(current.quantized.model.path));
    verify = same ? current.verify : await backend.verify(input.model, quantized.model, input.evaluation.dataset, input.evaluation.options, ctx);
    // The backend reads the search's float nodes as exclusions; the report says who chose them.
    const chosen = new Set(current.floatNodes.filter((n) => !(input.options.excludeNodes ?? []).includes(n)));
    if (chosen.size) quantized = { ...quantized, decisions: quantized.decisions.map((d) => (chosen.has(d.node) && !d.quantized ? { ...d, reason: 'kept in float by the latency search (smallest tensors first; with every opt-in node in int8 verification failed)' } : d)) };
  }
  if (current.method) notes.push(`calibrated with ${current.method}: with the run's ${input.table?.method ?? 'default'} ranges the opt-in families in int8 failed verification`);
  if (current.floatNodes.length) notes.push(`${current.floatNodes.length} opt-in node(s) kept in float (smallest tensors first): with all of them in int8 verification failed`);
  for (const f of files) rmSync(f, { force: true });
  notes.push(...verdictNotes);
  return {
    quantized,
    verify,
    options,
    verdictNotes,
    table: current.table,
    choices: { threads: input.threads, budgetMs, durationMs: clock() - started, families: current.families, storageOnly: current.storageOnly, ...(current.method ? { method: current.method } : {}), ...(current.floatNodes.length ? { floatNodes: current.floatNodes } : {}), vsFp32, steps, notes },
  };
}
