// Trials through the queue, CLI side: the trial recipe, what a worker runs for it, the runner that
// queues a search's trials, and progress across workers.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Flags } from '@oclif/core';
import {
  QforgeError,
  Trial,
  createRunContext,
  deriveTable,
  errInvalidOption,
  modelRef,
  openDataset,
  quantizeOptionsFor,
  readRunReport,
  resolveTargetProfile,
  runQuantize,
  sha256Bytes,
  validateCalibrationTable,
  withInputShapes,
  writeCalibrationTable,
  writeFileAtomic,
  type BackendRegistry,
  type CalibrationMethod,
  type CalibrationTable,
  type ErrorCode,
  type ImagePreprocessing,
  type MetricKind,
  type QuantizeOptions,
  type RunReport,
  type TaskOptions,
  type TrialPlan,
  type TrialRunner,
  type TrialScore,
  type TrialVariant,
} from '@qforge/core';
import { queueTrialSource, writeReportHtml, type QueuedTrialSource, type RunStore } from '@qforge/dashboard';
import { canonicalJson, connectedWorkers, formatMachine, listTrials, redactQueueUrl, machineKey, runTrials, type MachineInfo, type QueueStatus, type TrialHandler, type TrialHandlerContext, type TrialJobData, type TrialRequest } from '@qforge/queue';

export const queueFlag = Flags.string({
  description: 'Run the trials on workers through this Redis queue (redis://host:port; see docs/scale-out.md). Default: in this process.',
  helpGroup: 'SCALE-OUT',
});

/** The job kind of every qforge trial: one quantize recipe. */
export const TRIAL_KIND = 'quantize';

/** Where a trial's calibration table comes from. */
export type TrialCalibration =
  /** A table the queuing command wrote to the shared runs folder (`.qforge-tables/<sha256>.json`); the worker checks its SHA-256. */
  | { table: { path: string; sha256: string } }
  /**
   * Calibrated on the worker with histograms, once per (model, data, sample count) per worker, and
   * `method` derived from them — a sweep's cells, so a sweep never calibrates on the queuing machine.
   */
  | { calibrate: { data: string; samples: number; method: CalibrationMethod } };

/**
 * One trial: a quantize recipe (backend, target, calibration, options, per-node exclusions) and
 * what the worker gives back — a published run directory (`run`: a sweep cell, verified and
 * benchmarked) or a score (`score`: a sensitivity or search variant, quantized and verified).
 */
export interface TrialRecipe {
  backend: string;
  /** The resolved profile id: every worker uses the recipe of the machine that queued the trial. */
  target: string;
  calibration?: TrialCalibration;
  /**
   * Quantize options. A score trial takes them all (the base options of the search it belongs to);
   * a run trial reads `perChannel`, `excludeNodes` and `activation16Nodes`, the rest from the target.
   */
  quantize: Partial<Omit<QuantizeOptions, 'output' | 'target' | 'correctionData'>>;
  evaluation: { data: string; samples: number; task?: TaskOptions };
  image: Partial<ImagePreprocessing>;
  inputShapes: string[];
  outcome: { kind: 'run'; benchmarkRuns: number; command: string } | { kind: 'score'; metric: MetricKind };
}

export interface QueuedRunResult {
  /** The run directory in the shared runs folder. */
  runDir: string;
}

/** A score trial's result: the `TrialScore` as JSON that keeps ±Infinity and NaN (an SNR of identical outputs is Infinity). */
export interface QueuedScoreResult {
  scored: string;
}

const NON_FINITE = '\u0000number:';

export function encodeScore(s: TrialScore): QueuedScoreResult {
  return { scored: JSON.stringify(s, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? `${NON_FINITE}${v}` : v)) };
}

export function decodeScore(r: QueuedScoreResult): TrialScore {
  return JSON.parse(r.scored, (_k, v: unknown) => (typeof v === 'string' && v.startsWith(NON_FINITE) ? Number(v.slice(NON_FINITE.length)) : v)) as TrialScore;
}

/** Run directories made by a queued trial end in the job id's first hex digits (`…-q0123abcd4567`). */
function queuedSuffix(jobId: string): string {
  return `-q${jobId.replace(/^t-/, '').slice(0, 12)}`;
}

/** A finished run directory of this job from an earlier attempt (the worker died after renaming it). */
function findQueuedRun(runsDir: string, jobId: string): string | undefined {
  if (!existsSync(runsDir)) return undefined;
  const suffix = queuedSuffix(jobId);
  for (const name of readdirSync(runsDir)) {
    if (name.startsWith('.') || !name.endsWith(suffix)) continue;
    try {
      const report = readRunReport(join(runsDir, name, 'report.json'));
      if (report.status === 'succeeded' && (report.options.queue as { job?: string } | undefined)?.job === jobId) return join(runsDir, name);
    } catch {
      // A damaged folder is not a result; the trial runs again.
    }
  }
  return undefined;
}

/**
 * Moves a run built in this host's staging folder into the shared runs folder, renamed after the
 * job and with its report naming the job and the machine. The rename is the commit point: a
 * folder either is there complete or not at all.
 */
async function publishRun(stagedDir: string, runsDir: string, jobId: string, machine: MachineInfo): Promise<{ runDir: string; report: RunReport }> {
  // A worker that lost its lock (paused past --lock-ms) may finish after the trial's new owner: first one wins.
  const existing = findQueuedRun(runsDir, jobId);
  if (existing) {
    rmSync(stagedDir, { recursive: true, force: true });
    return { runDir: existing, report: readRunReport(join(existing, 'report.json')) };
  }
  const name = `${stagedDir.split(/[\\/]/).pop()}${queuedSuffix(jobId)}`;
  const finalDir = join(runsDir, name);
  const relocate = (text: string) => text.split(stagedDir).join(finalDir);
  const report = JSON.parse(relocate(readFileSync(join(stagedDir, 'report.json'), 'utf8'))) as RunReport;
  report.runId = name;
  report.options.queue = { job: jobId, worker: machine.worker, host: machine.host, cpu: machine.cpu, avx2: machine.avx2, vnni: machine.vnni, threads: machine.threads };
  await writeFileAtomic(join(stagedDir, 'report.json'), JSON.stringify(report, null, 1) + '\n');
  if (existsSync(join(stagedDir, 'summary.txt'))) await writeFileAtomic(join(stagedDir, 'summary.txt'), relocate(readFileSync(join(stagedDir, 'summary.txt'), 'utf8')));
  renameSync(stagedDir, finalDir);
  await writeReportHtml(finalDir, report).catch(() => undefined);
  return { runDir: finalDir, report };
}

/**
 * What identifies a table: its content without the time it was made, so the same calibration made
 * again (a rerun) names the same file and the same job ids.
 */
export function tableIdentity(table: CalibrationTable): string {
  const { createdAt: _createdAt, ...content } = table;
  return sha256Bytes(canonicalJson(content));
}

/** Reads a table the queuing command wrote, refusing one whose content changed since (like the model check). */
function readSharedTable(ref: { path: string; sha256: string }, worker: string): CalibrationTable {
  let text: string;
  try {
    text = readFileSync(ref.path, 'utf8');
  } catch (e) {
    throw errInvalidOption('calibration table', `${ref.path} cannot be read on worker ${worker} (${(e as Error).message})`, 'Workers read the tables the queuing command wrote under <runs-dir>/.qforge-tables/ at the same path: use a shared runs folder (docs/scale-out.md).');
  }
  const table = validateCalibrationTable(JSON.parse(text), ref.path);
  const sha = tableIdentity(table);
  if (sha !== ref.sha256) throw errInvalidOption('calibration table', `${ref.path} on worker ${worker} has content SHA-256 ${sha.slice(0, 12)}…, but the trial was queued for ${ref.sha256.slice(0, 12)}…`, 'The file changed or the shared folder differs between machines; queue the trials again.');
  return table;
}

/**
 * The handlers a `qforge worker` runs. Runs are built under `<runs>/.qforge-staging-<host>/`:
 * unfinished-run cleanup tells live writers from dead ones by process id, which only means
 * something on the host that wrote them.
 */
export function trialHandlers(registry: BackendRegistry, qforgeVersion: string): Record<string, TrialHandler> {
  // A worker calibrates each (model, data, sample count) once and derives every method from it, as the in-process sweep does.
  const calibrations = new Map<string, Promise<CalibrationTable>>();
  const quantize: TrialHandler = async (job: TrialJobData, hctx: TrialHandlerContext): Promise<QueuedRunResult | QueuedScoreResult> => {
    const recipe = job.spec as TrialRecipe;
    const runsDir = resolve(job.runsDir);
    if (recipe.outcome.kind === 'run') {
      const adopted = findQueuedRun(runsDir, hctx.id);
      if (adopted) return { runDir: adopted };
    }
    const ctx = createRunContext({ signal: hctx.signal, progress: hctx.progress });
    const model = modelRef(job.model);
    const backend = await registry.resolve({ backend: recipe.backend, format: model.format, verb: 'quantize' });
    const target = resolveTargetProfile(recipe.target, undefined, backend.capabilities.targets);
    const inputs = async () => withInputShapes(await backend.modelInputs(model, ctx), recipe.inputShapes);
    let table: CalibrationTable | undefined;
    const cal = recipe.calibration;
    if (cal && 'table' in cal) table = readSharedTable(cal.table, hctx.machine.worker);
    else if (cal) {
      const key = JSON.stringify([job.modelSha256, backend.id, target.id, cal.calibrate.data, cal.calibrate.samples, recipe.image, recipe.inputShapes]);
      let full = calibrations.get(key);
      if (!full) {
        full = (async () => backend.calibrate(model, openDataset(cal.calibrate.data, { inputs: await inputs(), image: recipe.image }), { method: 'entropy', samples: cal.calibrate.samples, target, keepHistograms: true }, ctx))();
        calibrations.set(key, full);
        full.catch(() => calibrations.delete(key));
      }
      table = deriveTable(await full, cal.calibrate.method);
      for (const t of Object.values(table.tensors)) delete t.histogram;
    }

    const outcome = recipe.outcome;
    if (outcome.kind === 'score') {
      // The same `Trial` an in-process search runs, so the score is the same.
      const dataset = openDataset(recipe.evaluation.data, { inputs: await inputs(), image: recipe.image });
      const trial = new Trial(backend, model, quantizeOptionsFor(target, { ...recipe.quantize, output: '' }), { dataset, samples: recipe.evaluation.samples, metric: outcome.metric, task: recipe.evaluation.task }, ctx);
      try {
        return encodeScore(await trial.run(table, recipe.quantize.excludeNodes ?? [], recipe.quantize.activation16Nodes ?? []));
      } finally {
        trial.dispose();
      }
    }

    const scratch = mkdtempSync(join(tmpdir(), 'qforge-trial-'));
    const staging = join(runsDir, `.qforge-staging-${hostname().replace(/[^A-Za-z0-9_.-]/g, '_')}`);
    mkdirSync(staging, { recursive: true });
    try {
      const tablePath = table ? join(scratch, 'calibration.json') : undefined;
      if (table && tablePath) await writeCalibrationTable(tablePath, table);
      // A run trial is a sweep cell: it differs only by calibration (no latency search).
      const opts = {
        model,
        runsDir: staging,
        target,
        calibTable: tablePath,
        perChannel: recipe.quantize.perChannel,
        excludeNodes: recipe.quantize.excludeNodes,
        activation16Nodes: recipe.quantize.activation16Nodes,
        evalData: recipe.evaluation.data,
        evalSamples: recipe.evaluation.samples,
        task: recipe.evaluation.task,
        benchmarkRuns: outcome.benchmarkRuns,
        image: recipe.image,
        inputShapes: recipe.inputShapes,
        command: outcome.command,
        qforgeVersion,
        latencySearch: false,
      };
      try {
        const r = await runQuantize(backend, opts, ctx);
        return { runDir: (await publishRun(r.runDir, runsDir, hctx.id, hctx.machine)).runDir };
      } catch (e) {
        // A failed run's report is published too, so the failure is visible beside the rows.
        const staged = (e as { runDir?: string }).runDir;
        if (staged && existsSync(staged)) await publishRun(staged, runsDir, hctx.id, hctx.machine).catch(() => undefined);
        throw e;
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  };
  return { [TRIAL_KIND]: quantize };
}

/** Tables queued trials read live here, named by their content SHA-256 (so equal tables are one file and one job id). */
export const SHARED_TABLES = '.qforge-tables';

/** Writes the table once under its content SHA-256 (an equal table made by a rerun reuses the file). */
async function shareTable(runsDir: string, table: CalibrationTable): Promise<{ path: string; sha256: string }> {
  const sha256 = tableIdentity(table);
  const path = join(runsDir, SHARED_TABLES, `${sha256}.json`);
  if (!existsSync(path)) {
    mkdirSync(join(runsDir, SHARED_TABLES), { recursive: true });
    await writeCalibrationTable(path, table);
  }
  return { path, sha256 };
}

/** A failed score trial ends the search: its coded cause when it had one. */
function errQueuedTrialFailed(label: string, id: string, reason: string, code: string | undefined, attempts: number): QforgeError {
  const known = code && /^E_[A-Z_]+$/.test(code) ? (code as ErrorCode) : 'E_RUNTIME_FAILED';
  return new QforgeError(known, `queued trial "${label}" failed after ${attempts} attempt(s): ${reason}`, {
    context: { operation: 'queued trial', job: id },
    hint: 'The worker logs say more. Rerunning the command retries failed trials and reuses finished ones.',
  });
}

export interface QueuedTrialRunnerOptions {
  url: string;
  /** The shared runs folder: tables go to its `.qforge-tables/`. */
  runsDir: string;
  /** Everything the trials share, as a search hands it to `Trial`; workers open `evaluationSource`. */
  plan: TrialPlan;
  signal?: AbortSignal;
}

/**
 * A `TrialRunner` over the queue: every variant becomes a score trial (content-derived job id;
 * its table shared by SHA-256). Variants without `until` go out together; with `until` they go
 * out in waves as wide as the workers connected, so a hit in an early wave saves the rest.
 */
export function queuedTrialRunner(o: QueuedTrialRunnerOptions): TrialRunner {
  const source = o.plan.evaluationSource;
  if (!source) throw errInvalidOption('--queue', 'the evaluation data is a Dataset object, which workers cannot open', 'Pass the evaluation data as a spec (a path on the shared folder, mnist:test, …).');
  const model = resolve(o.plan.model.path);
  const runsDir = resolve(o.runsDir);
  const { output: _output, target: _target, correctionData: _data, ...base } = o.plan.options;
  const machines = new Set<string>();
  let trials = 0;
  // Variants share table objects (every node's variants one table): each is hashed and written once.
  const shared = new WeakMap<CalibrationTable, Promise<{ path: string; sha256: string }>>();
  const share = (t: CalibrationTable) => {
    let ref = shared.get(t);
    if (!ref) shared.set(t, (ref = shareTable(runsDir, t)));
    return ref;
  };
  const request = async (v: TrialVariant): Promise<TrialRequest> => {
    const recipe: TrialRecipe = {
      backend: o.plan.backend.id,
      target: o.plan.options.target.id,
      ...(v.table ? { calibration: { table: await share(v.table) } } : {}),
      quantize: { ...base, excludeNodes: v.excludeNodes, activation16Nodes: v.activation16Nodes ?? [] },
      evaluation: { data: source.spec, samples: o.plan.evaluation.samples, ...(o.plan.evaluation.task ? { task: o.plan.evaluation.task } : {}) },
      image: source.image ?? {},
      inputShapes: source.inputShapes ?? [],
      outcome: { kind: 'score', metric: o.plan.evaluation.metric },
    };
    return { kind: TRIAL_KIND, model, runsDir, label: v.label, spec: recipe };
  };
  return {
    async runAll(variants, until) {
      const requests = await Promise.all(variants.map(request));
      const out: TrialScore[] = [];
      for (let at = 0; at < requests.length; ) {
        const wave = until ? Math.max(1, await connectedWorkers(o.url)) : requests.length;
        const batch = requests.slice(at, at + wave);
        at += batch.length;
        const printer = queueStatusPrinter();
        const outcomes = await runTrials<QueuedScoreResult>(o.url, batch, { onStatus: printer.onStatus, onStalled: printer.onStalled, signal: o.signal }).finally(printer.done);
        for (const r of outcomes) {
          if (r.state === 'failed') throw errQueuedTrialFailed(r.request.label, r.id, r.reason, r.code, r.attempts);
          machines.add(formatMachine(r.value.machine));
          trials++;
          out.push(decodeScore(r.value.result));
        }
        if (until && out.some(until)) break;
      }
      return out;
    },
    describe: () => (trials ? { trials, workers: [...machines].sort() } : undefined),
  };
}

/** `qforge dashboard --queue`: the page's queued trials of one runs folder, read from the queue. */
export function dashboardTrialSource(url: string, runsDir: string): (store: RunStore) => QueuedTrialSource {
  return (store) => queueTrialSource(store, redactQueueUrl(url), () => listTrials(url, { runsDir: resolve(runsDir) }));
}

/** Speed columns compare only within one machine: the machines that measured speedups, when more than one. */
export function mixedSpeedMachines(rows: { speedup?: number; machineKey?: string; machine?: string }[]): string[] {
  const seen = new Map<string, string>();
  for (const r of rows) if (r.speedup !== undefined && r.machineKey) seen.set(r.machineKey, r.machine ?? r.machineKey);
  return seen.size > 1 ? [...seen.values()] : [];
}

export { formatMachine, machineKey };

/** Progress across workers on stderr: a rewritten line on a terminal, a line per change otherwise. */
export function queueStatusPrinter(quiet = false): { onStatus(s: QueueStatus): void; onStalled(id: string, label: string): void; done(): void } {
  const tty = Boolean(process.stderr.isTTY);
  let last = '';
  let noWorkerSince: number | undefined;
  let hinted = false;
  const write = (line: string) => {
    if (quiet) return;
    if (tty) process.stderr.write(`\r\x1b[2K${line}`);
    else process.stderr.write(`${line}\n`);
  };
  return {
    onStatus(s) {
      const running = s.running.map((r) => `${r.progress?.worker ?? '?'}: ${r.label}${r.progress ? ` ${r.progress.phase}${r.progress.total ? ` ${r.progress.current}/${r.progress.total}` : ''}` : ''}`);
      const counts = `trials ${s.completed + s.failed}/${s.total} done${s.failed ? ` (${s.failed} failed)` : ''}, ${s.running.length} running, ${s.waiting} queued, ${s.workers} worker(s)`;
      const line = tty ? `${counts}${running.length ? ` | ${running.join('; ')}` : ''}` : counts;
      if (line !== last) write(line.slice(0, tty ? (process.stderr.columns ?? 120) - 1 : undefined));
      last = line;
      if (s.workers === 0 && s.completed + s.failed < s.total) {
        noWorkerSince ??= Date.now();
        if (!hinted && Date.now() - noWorkerSince > 5000) {
          hinted = true;
          if (!quiet) process.stderr.write(`${tty ? '\n' : ''}no worker is connected to the queue: start one with \`qforge worker --queue <url>\` (docs/scale-out.md)\n`);
        }
      } else noWorkerSince = undefined;
    },
    onStalled(id, label) {
      if (!quiet) process.stderr.write(`${tty ? '\n' : ''}trial ${label} (${id}) lost its worker; the queue hands it to another\n`);
    },
    done() {
      if (tty && last && !quiet) process.stderr.write('\n');
    },
  };
}
