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

/** Time the search may take by default (quantize + verify + timing per candidate), in ms. */
export const DEFAULT_LATENCY_BUDGET_MS = 300_000;

/** One timed candidate. */
export interface LatencyStep {
  /** What was tried: `all opt-in families`, `+element-wise`, `−concat`, `int8 storage only`. */
  candidate: string;
  /** Opt-in families on in this candidate. */
  families: string[];
  storageOnly?: boolean;
  /** Calibration method of the candidate's table when it differs from the run's. */
  method?: string;
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
  quantized: QuantizeResult;
  verify: VerifyResult;
  label: string;
}

const key = (families: readonly string[]) => [...families].sort().join('+');

/**
 * Greedy search over the backend's opt-in op families, then the fp32 check:
 * 1. all opt-in families present in the model on, against the default set;
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
  const opTypesFor = (on: readonly string[]) => (on.length ? [...defaults, ...families.filter((f) => on.includes(f.family)).flatMap((f) => f.opTypes)] : []);
  const ext = extname(input.options.output) || '.onnx';
  const steps: LatencyStep[] = [];
  const notes: string[] = [];
  const verdictNotes: string[] = [];
  const files: string[] = [];
  let serial = 0;
  const build = async (on: string[], storageOnly: boolean, label: string, table: CalibrationTable | undefined, method?: string): Promise<Choice> => {
    throwIfAborted(ctx, 'latency search');
    const output = join(input.evaluation.workDir, `latency-candidate-${++serial}${ext}`);
    files.push(output);
    const options: QuantizeOptions = { ...input.options, opTypes: opTypesFor(on), storageOnly, output };
    const quantized = await backend.quantize(input.model, table, options, ctx);
    const verify = await backend.verify(input.model, quantized.model, input.evaluation.dataset, input.evaluation.options, ctx);
    return { families: on, storageOnly, quantized, verify, label, table, method };
  };
  const time = async (a: Choice, b: Choice | 'fp32') => {
    const bRef = b === 'fp32' ? input.model : b.quantized.model;
    return input.timer(a.quantized.model, bRef, ctx);
  };
  const outOfTime = () => clock() - started > budgetMs;

  let current: Choice = { families: [], storageOnly: false, quantized: input.quantized, verify: input.verify, label: 'default op families', table: input.table };
  const step = (c: Choice, t: Awaited<ReturnType<typeof time>>): boolean => {
    const faster = t.speedup.low > 1;
    const kept = c.verify.passed && faster;
    const reason = !c.verify.passed ? `fails verification (${c.verify.failures[0] ?? 'thresholds not met'})` : faster ? 'passes verification and is measurably faster' : 'not measurably faster';
    steps.push({ candidate: c.label, families: c.families, ...(c.method ? { method: c.method } : {}), against: current.label, medianMs: t.primaryMs, againstMedianMs: t.compareMs, speedup: t.speedup, passed: c.verify.passed, kept, reason });
    return kept;
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
      const c = await build(on, false, label, current.table, current.method);
      if (step(c, await time(c, current))) current = c;
      else if (i === 0 && !c.verify.passed) {
        // Every family in int8 may need finer ranges than the defaults did: retry with the other methods.
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
          if (a.verify.passed) break; // passes but is not faster: another method will not be faster either
        }
      }
    }
  }

  // The fp32 check: never write a model measurably slower than its input without trying the fallback.
  const vs = await time(current, 'fp32');
  let vsFp32 = vs.speedup;
  steps.push({ candidate: current.label, families: current.families, against: 'fp32', medianMs: vs.primaryMs, againstMedianMs: vs.compareMs, speedup: vs.speedup, passed: current.verify.passed, kept: true, reason: 'the choice kept, timed against fp32' });
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
  const options: QuantizeOptions = { ...input.options, opTypes: current.families.length ? opTypesFor(current.families) : input.options.opTypes, storageOnly: current.storageOnly || undefined };
  let quantized = input.quantized;
  let verify = input.verify;
  if (current.quantized !== input.quantized) {
    quantized = await backend.quantize(input.model, current.table, options, ctx);
    const same = (await sha256File(quantized.model.path)) === (await sha256File(current.quantized.model.path));
    verify = same ? current.verify : await backend.verify(input.model, quantized.model, input.evaluation.dataset, input.evaluation.options, ctx);
  }
  if (current.method) notes.push(`calibrated with ${current.method}: with the run's ${input.table?.method ?? 'default'} ranges the opt-in families in int8 failed verification`);
  for (const f of files) rmSync(f, { force: true });
  notes.push(...verdictNotes);
  return {
    quantized,
    verify,
    options,
    verdictNotes,
    table: current.table,
    choices: { threads: input.threads, budgetMs, durationMs: clock() - started, families: current.families, storageOnly: current.storageOnly, ...(current.method ? { method: current.method } : {}), vsFp32, steps, notes },
  };
}
