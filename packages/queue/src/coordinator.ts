// Enqueues trials under content-derived ids and collects their results, with progress across workers.
import { Job, Queue, QueueEvents } from 'bullmq';
import { sha256File, throwIfAborted, createRunContext } from '@qforge/core';
import { TRIAL_QUEUE_NAME, TRIAL_QUEUE_PREFIX, bullConnection, checkQueueReachable } from './connection';
import { trialJobId } from './job-id';
import type { TrialJobData, TrialJobResult, TrialProgress } from './trial';

/** One trial to run: what `TrialJobData` holds minus the model hash, which is computed here. */
export type TrialRequest = Omit<TrialJobData, 'modelSha256'>;

export type TrialOutcome<R = unknown> =
  | { id: string; request: TrialRequest; state: 'completed'; value: TrialJobResult<R> }
  | { id: string; request: TrialRequest; state: 'failed'; reason: string; code?: string; attempts: number };

export interface QueueStatus {
  total: number;
  completed: number;
  failed: number;
  running: { id: string; label: string; progress?: TrialProgress }[];
  waiting: number;
  /** Workers connected to the queue now. */
  workers: number;
}

export interface RunTrialsOptions {
  /** Tries per trial for errors that are not coded (a lost worker counts separately, see the worker's maxStalledCount). @defaultValue 2 */
  attempts?: number;
  onStatus?(status: QueueStatus): void;
  /** Called once when a trial lost its worker and went back to the queue. */
  onStalled?(id: string, label: string): void;
  signal?: AbortSignal;
  /** How often job states are read. @defaultValue 300 */
  pollMs?: number;
}

/** Completed trials are kept a week so a rerun finds them instead of running them again. */
const KEEP_COMPLETED_S = 7 * 24 * 3600;

/**
 * Adds every trial (a trial whose id is already queued, running or done is not added again; one
 * that failed before is retried) and waits for all of them. Results come back in request order.
 */
export async function runTrials<R = unknown>(url: string, requests: TrialRequest[], opts: RunTrialsOptions = {}): Promise<TrialOutcome<R>[]> {
  await checkQueueReachable(url);
  const shas = new Map<string, string>();
  for (const r of requests) if (!shas.has(r.model)) shas.set(r.model, await sha256File(r.model));
  const jobs = requests.map((request) => {
    const data: TrialJobData = { ...request, modelSha256: shas.get(request.model)! };
    return { id: trialJobId(request.kind, data.modelSha256, { spec: request.spec, runsDir: request.runsDir }), data };
  });
  const unique = new Map(jobs.map((j) => [j.id, j]));
  const connection = bullConnection(url);
  const queue = new Queue<TrialJobData, TrialJobResult<R>>(TRIAL_QUEUE_NAME, { connection, prefix: TRIAL_QUEUE_PREFIX });
  const events = new QueueEvents(TRIAL_QUEUE_NAME, { connection, prefix: TRIAL_QUEUE_PREFIX });
  const progress = new Map<string, TrialProgress>();
  const stalledSeen = new Set<string>();
  try {
    await events.waitUntilReady();
    events.on('progress', ({ jobId, data }) => {
      if (unique.has(jobId)) progress.set(jobId, data as unknown as TrialProgress);
    });
    events.on('stalled', ({ jobId }) => {
      const j = unique.get(jobId);
      if (j && !stalledSeen.has(jobId)) {
        stalledSeen.add(jobId);
        opts.onStalled?.(jobId, j.data.label);
      }
    });
    await queue.addBulk(
      [...unique.values()].map((j) => ({
        name: j.data.kind,
        data: j.data,
        opts: { jobId: j.id, attempts: opts.attempts ?? 2, removeOnComplete: { age: KEEP_COMPLETED_S }, removeOnFail: { age: KEEP_COMPLETED_S } },
      })),
    );
    // A rerun gives failed trials another chance; completed ones are reused as they are.
    for (const id of unique.keys()) if ((await queue.getJobState(id)) === 'failed') await (await Job.fromId(queue, id))?.retry('failed');

    const done = new Map<string, TrialOutcome<R>>();
    const ctx = createRunContext({ signal: opts.signal });
    for (;;) {
      throwIfAborted(ctx, 'waiting for queued trials');
      const running: QueueStatus['running'] = [];
      let waiting = 0;
      for (const [id, j] of unique) {
        if (done.has(id)) continue;
        const state = await queue.getJobState(id);
        if (state === 'completed' || state === 'failed') {
          const job = await Job.fromId<TrialJobData, TrialJobResult<R>>(queue, id);
          if (!job) continue;
          if (state === 'completed') done.set(id, { id, request: j.data, state, value: job.returnvalue });
          else {
            const code = /^(E_[A-Z_]+): /.exec(job.failedReason ?? '')?.[1];
            done.set(id, { id, request: j.data, state, reason: job.failedReason ?? 'unknown failure', ...(code ? { code } : {}), attempts: job.attemptsStarted });
          }
        } else if (state === 'active') running.push({ id, label: j.data.label, progress: progress.get(id) });
        else waiting++;
      }
      const workers = opts.onStatus ? (await queue.getWorkers()).length : 0;
      const outcomes = [...done.values()];
      opts.onStatus?.({ total: unique.size, completed: outcomes.filter((o) => o.state === 'completed').length, failed: outcomes.filter((o) => o.state === 'failed').length, running, waiting, workers });
      if (done.size === unique.size) break;
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 300));
    }
    return jobs.map((j) => done.get(j.id)!);
  } finally {
    await events.close().catch(() => undefined);
    await queue.close().catch(() => undefined);
  }
}
