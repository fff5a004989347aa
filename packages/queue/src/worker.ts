// A trial worker: takes jobs from the queue, checks the model it was sent, runs the kind's handler.
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { errInvalidOption, isQforgeError, sha256File, type ProgressEvent } from '@qforge/core';
import { TRIAL_QUEUE_NAME, TRIAL_QUEUE_PREFIX, bullConnection, checkQueueReachable } from './connection';
import { describeMachine, type MachineInfo } from './machine';
import type { TrialJobData, TrialJobResult, TrialProgress } from './trial';

export interface TrialHandlerContext {
  id: string;
  signal: AbortSignal;
  progress(event: ProgressEvent): void;
  machine: MachineInfo;
}

/** Runs one trial of a kind; throws a QforgeError for failures a retry cannot fix. */
export type TrialHandler = (job: TrialJobData, ctx: TrialHandlerContext) => Promise<unknown>;

export interface TrialWorkerOptions {
  url: string;
  handlers: Record<string, TrialHandler>;
  /** Shown in progress and recorded in every result. @defaultValue `<host>-<pid>` */
  name?: string;
  /** Trials run at once by this worker. @defaultValue 1 */
  concurrency?: number;
  /**
   * How long a trial's lock lives without renewal. A worker that dies stops renewing; after this
   * (plus one stalled-check interval) another worker takes the trial. Must exceed the longest time
   * a trial blocks the event loop. @defaultValue 30000
   */
  lockMs?: number;
  /** How many times a lost worker's trial is handed over before it is marked failed. @defaultValue 1 */
  maxStalledCount?: number;
  /** How long a released trial may take to stop at its next check before the worker closes anyway. @defaultValue 10000 */
  releaseGraceMs?: number;
  log?(line: string): void;
}

export interface TrialWorker {
  machine: MachineInfo;
  /**
   * Stops taking trials and hands the ones in progress back to the queue (aborted, moved to
   * waiting without counting an attempt), then closes. Resolves when closed.
   */
  release(): Promise<void>;
  /** Resolves when the worker has closed. */
  closed: Promise<void>;
}

const PROGRESS_EVERY_MS = 500;

export async function startTrialWorker(opts: TrialWorkerOptions): Promise<TrialWorker> {
  await checkQueueReachable(opts.url);
  const machine = describeMachine(opts.name);
  const log = opts.log ?? (() => undefined);
  const lockMs = opts.lockMs ?? 30000;
  const active = new Map<string, AbortController>();
  let releasing = false;

  const processor = async (job: Job<TrialJobData, TrialJobResult>, token?: string): Promise<TrialJobResult> => {
    const started = Date.now();
    const data = job.data;
    const handler = opts.handlers[data.kind];
    if (!handler) throw new UnrecoverableError(`E_UNSUPPORTED: this worker runs ${Object.keys(opts.handlers).join(', ')} trials, not ${data.kind}`);
    const controller = new AbortController();
    active.set(job.id!, controller);
    log(`${machine.worker}: trial ${job.id} (${data.label}) attempt ${Math.max(1, job.attemptsStarted)}`);
    let lastSent = 0;
    let lastPhase = '';
    const progress = (e: ProgressEvent) => {
      const now = Date.now();
      if (e.phase === lastPhase && now - lastSent < PROGRESS_EVERY_MS && e.current !== e.total) return;
      lastSent = now;
      lastPhase = e.phase;
      const p: TrialProgress = { worker: machine.worker, phase: e.phase, current: e.current, ...(e.total !== undefined ? { total: e.total } : {}), ...(e.message ? { message: e.message } : {}) };
      job.updateProgress(p as unknown as object).catch(() => undefined);
    };
    try {
      // A different file at the same path must be refused, not quantized under the old one's name.
      let sha: string;
      try {
        sha = await sha256File(data.model);
      } catch (e) {
        throw errInvalidOption('model', `${data.model} cannot be read on worker ${machine.worker} (${(e as Error).message})`, 'Workers read the model and data at the same paths as the command that queued them: use a shared folder (docs/scale-out.md).');
      }
      if (sha !== data.modelSha256) throw errInvalidOption('model', `${data.model} on worker ${machine.worker} has SHA-256 ${sha.slice(0, 12)}…, but the trial was queued for ${data.modelSha256.slice(0, 12)}…`, 'The file changed or the shared folder differs between machines; queue the trials again.');
      progress({ phase: 'load', current: 0, message: data.label });
      const result = await handler(data, { id: job.id!, signal: controller.signal, progress, machine });
      log(`${machine.worker}: trial ${job.id} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return { result, machine, durationMs: Date.now() - started, attempt: Math.max(1, job.attemptsStarted) };
    } catch (e) {
      if (releasing && token) {
        // Handed back whole: another worker starts the trial from the beginning.
        await job.moveToWait(token);
        log(`${machine.worker}: trial ${job.id} released to the queue`);
        throw new WaitingError();
      }
      // Coded errors come from the inputs (a bad model, data or option): a retry would fail the same way.
      if (isQforgeError(e)) throw new UnrecoverableError(`${e.code}: ${e.message}`);
      throw e;
    } finally {
      active.delete(job.id!);
    }
  };

  const worker = new Worker<TrialJobData, TrialJobResult>(TRIAL_QUEUE_NAME, processor, {
    connection: bullConnection(opts.url),
    prefix: TRIAL_QUEUE_PREFIX,
    concurrency: opts.concurrency ?? 1,
    name: machine.worker,
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: opts.maxStalledCount ?? 1,
    autorun: false,
  });
  worker.on('error', (e) => log(`${machine.worker}: queue error: ${e.message}`));
  const closed = worker.run().then(() => undefined);
  const release = async () => {
    if (releasing) return closed;
    releasing = true;
    for (const c of active.values()) c.abort();
    const grace = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), opts.releaseGraceMs ?? 10000).unref());
    if ((await Promise.race([worker.close().then(() => 'closed' as const), grace])) === 'timeout') {
      // The trial did not stop in time: its lock lapses and stalled-job detection hands it over.
      log(`${machine.worker}: a trial did not stop within the grace period; closing anyway (another worker takes it after the lock expires)`);
      await worker.close(true);
    }
    await closed;
  };
  return { machine, release, closed };
}
