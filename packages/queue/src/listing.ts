// What the queue holds right now: trials waiting, running and finished, for dashboards and status lines.
import { Queue, type Job, type JobType } from 'bullmq';
import { TRIAL_QUEUE_NAME, TRIAL_QUEUE_PREFIX, bullConnection, checkQueueReachable } from './connection';
import type { TrialJobData, TrialJobResult, TrialProgress } from './trial';

export type TrialState = 'waiting' | 'running' | 'completed' | 'failed';

/** One trial as the queue knows it. Labels and paths come from whoever queued the job: escape them before showing. */
export interface TrialListing {
  id: string;
  kind: string;
  label: string;
  /** The model's path as queued. */
  model: string;
  runsDir: string;
  state: TrialState;
  /** The last progress its worker published (running trials). */
  progress?: TrialProgress;
  /** The worker that runs or ran it. */
  worker?: string;
  /** Tries started (a handed-over or retried trial has more than one). */
  attempts: number;
  /** Epoch ms. */
  queuedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  /** Run trials: the run directory their result names. */
  runDir?: string;
  /** Failed trials: the cause (`E_…: message` for coded errors). */
  failedReason?: string;
}

export interface TrialList {
  trials: TrialListing[];
  /** Workers connected to the queue now. */
  workers: number;
  /** Counts over the whole queue; with `runsDir`, over the trials listed. */
  counts: Record<TrialState, number>;
}

export interface ListTrialsOptions {
  /** Only trials whose run directories go to this folder (compared as given, after resolving by the caller). */
  runsDir?: string;
  /** Most trials read per state. @defaultValue 200 */
  limit?: number;
}

const STATES: Record<TrialState, JobType[]> = {
  running: ['active'],
  waiting: ['waiting', 'prioritized', 'delayed', 'waiting-children'],
  completed: ['completed'],
  failed: ['failed'],
};

function listing(job: Job<TrialJobData, TrialJobResult>, state: TrialState): TrialListing {
  const progress = typeof job.progress === 'object' && job.progress !== null ? (job.progress as unknown as TrialProgress) : undefined;
  const result = job.returnvalue as TrialJobResult<{ runDir?: unknown }> | undefined;
  const runDir = state === 'completed' && typeof result?.result?.runDir === 'string' ? result.result.runDir : undefined;
  return {
    id: job.id ?? '',
    kind: job.data.kind,
    label: job.data.label,
    model: job.data.model,
    runsDir: job.data.runsDir,
    state,
    ...(state === 'running' && progress ? { progress } : {}),
    ...((result?.machine?.worker ?? job.processedBy ?? progress?.worker) ? { worker: result?.machine?.worker ?? job.processedBy ?? progress?.worker } : {}),
    attempts: job.attemptsStarted,
    queuedAt: job.timestamp,
    ...(job.processedOn ? { startedAt: job.processedOn } : {}),
    ...(job.finishedOn && (state === 'completed' || state === 'failed') ? { finishedAt: job.finishedOn } : {}),
    ...(runDir ? { runDir } : {}),
    ...(state === 'failed' ? { failedReason: (job.failedReason ?? 'unknown failure').slice(0, 500) } : {}),
  };
}

/**
 * Reads the queue's trials: running first, then waiting (oldest first), then finished (newest
 * first). Fails with E_QUEUE_UNAVAILABLE when Redis does not answer.
 */
export async function listTrials(url: string, opts: ListTrialsOptions = {}): Promise<TrialList> {
  await checkQueueReachable(url);
  const limit = opts.limit ?? 200;
  const queue = new Queue<TrialJobData, TrialJobResult>(TRIAL_QUEUE_NAME, { connection: bullConnection(url), prefix: TRIAL_QUEUE_PREFIX });
  try {
    const trials: TrialListing[] = [];
    const counts = { waiting: 0, running: 0, completed: 0, failed: 0 } as Record<TrialState, number>;
    for (const state of ['running', 'waiting', 'completed', 'failed'] as TrialState[]) {
      const newestFirst = state === 'completed' || state === 'failed';
      const jobs = (await queue.getJobs(STATES[state], 0, limit - 1, !newestFirst)) as Job<TrialJobData, TrialJobResult>[];
      for (const job of jobs) {
        if (!job?.data || (opts.runsDir !== undefined && job.data.runsDir !== opts.runsDir)) continue;
        trials.push(listing(job, state));
      }
      const c = await queue.getJobCounts(...STATES[state]);
      counts[state] = opts.runsDir === undefined ? Object.values(c).reduce((a, b) => a + b, 0) : trials.filter((t) => t.state === state).length;
    }
    return { trials, workers: (await queue.getWorkers()).length, counts };
  } finally {
    await queue.close().catch(() => undefined);
  }
}

/** Workers connected to the queue now (0 when none). */
export async function connectedWorkers(url: string): Promise<number> {
  const queue = new Queue(TRIAL_QUEUE_NAME, { connection: bullConnection(url), prefix: TRIAL_QUEUE_PREFIX });
  try {
    return (await queue.getWorkers()).length;
  } finally {
    await queue.close().catch(() => undefined);
  }
}
