// Trials through the queue, CLI side: what a worker runs for each trial kind, and progress across workers.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Flags } from '@oclif/core';
import {
  createRunContext,
  deriveTable,
  modelRef,
  openDataset,
  readRunReport,
  resolveTargetProfile,
  runQuantize,
  withInputShapes,
  writeCalibrationTable,
  writeFileAtomic,
  type BackendRegistry,
  type CalibrationMethod,
  type CalibrationTable,
  type ImagePreprocessing,
  type RunReport,
  type TaskOptions,
} from '@qforge/core';
import { writeReportHtml } from '@qforge/dashboard';
import { formatMachine, machineKey, type MachineInfo, type QueueStatus, type TrialHandler, type TrialHandlerContext, type TrialJobData } from '@qforge/queue';

export const queueFlag = Flags.string({
  description: 'Run the trials on workers through this Redis queue (redis://host:port; see docs/scale-out.md). Default: in this process.',
  helpGroup: 'SCALE-OUT',
});

/** One cell of a sweep grid, as a worker runs it: everything a trial's result depends on. */
export interface SweepTrialSpec {
  backend: string;
  /** The resolved profile id: every worker uses the recipe of the machine that queued the sweep. */
  target: string;
  data: string;
  evalData: string;
  samples: number;
  method: CalibrationMethod;
  perChannel: boolean;
  evalSamples: number;
  benchmarkRuns: number;
  task?: TaskOptions;
  image: Partial<ImagePreprocessing>;
  inputShapes: string[];
  command: string;
}

export interface QueuedRunResult {
  /** The run directory in the shared runs folder. */
  runDir: string;
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
 * The handlers a `qforge worker` runs. Runs are built under `<runs>/.qforge-staging-<host>/`:
 * unfinished-run cleanup tells live writers from dead ones by process id, which only means
 * something on the host that wrote them.
 */
export function trialHandlers(registry: BackendRegistry, qforgeVersion: string): Record<string, TrialHandler> {
  // A worker calibrates each (model, data, sample count) once and derives every method from it, as the in-process sweep does.
  const calibrations = new Map<string, Promise<CalibrationTable>>();
  const sweep: TrialHandler = async (job: TrialJobData, hctx: TrialHandlerContext): Promise<QueuedRunResult> => {
    const spec = job.spec as SweepTrialSpec;
    const runsDir = resolve(job.runsDir);
    const adopted = findQueuedRun(runsDir, hctx.id);
    if (adopted) return { runDir: adopted };
    const ctx = createRunContext({ signal: hctx.signal, progress: hctx.progress });
    const model = modelRef(job.model);
    const backend = await registry.resolve({ backend: spec.backend, format: model.format, verb: 'quantize' });
    const target = resolveTargetProfile(spec.target, undefined, backend.capabilities.targets);
    const key = JSON.stringify([job.modelSha256, backend.id, target.id, spec.data, spec.samples, spec.image, spec.inputShapes]);
    let full = calibrations.get(key);
    if (!full) {
      full = (async () => {
        const inputs = withInputShapes(await backend.modelInputs(model, ctx), spec.inputShapes);
        return backend.calibrate(model, openDataset(spec.data, { inputs, image: spec.image }), { method: 'entropy', samples: spec.samples, target, keepHistograms: true }, ctx);
      })();
      calibrations.set(key, full);
      full.catch(() => calibrations.delete(key));
    }
    const table = deriveTable(await full, spec.method);
    for (const t of Object.values(table.tensors)) delete t.histogram;
    const scratch = mkdtempSync(join(tmpdir(), 'qforge-trial-'));
    const staging = join(runsDir, `.qforge-staging-${hostname().replace(/[^A-Za-z0-9_.-]/g, '_')}`);
    mkdirSync(staging, { recursive: true });
    try {
      const tablePath = join(scratch, `s${spec.samples}-${spec.method}.json`);
      await writeCalibrationTable(tablePath, table);
      // A trial is a sweep cell: it differs only by calibration (no latency search).
      const opts = { model, runsDir: staging, target, calibTable: tablePath, perChannel: spec.perChannel, evalData: spec.evalData, evalSamples: spec.evalSamples, task: spec.task, benchmarkRuns: spec.benchmarkRuns, image: spec.image, inputShapes: spec.inputShapes, command: spec.command, qforgeVersion, latencySearch: false };
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
  return { sweep };
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
