// Queued trials for the dashboard: waiting, running and finished, read from the queue when the dashboard
// is given one, else from the runs folder (finished trial runs and the staging folders of running ones).
import { lstatSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { RUN_ID, type RunStore } from './runs';

export type QueuedTrialState = 'waiting' | 'running' | 'completed' | 'failed';

/** One trial as the page shows it. Every string may come from whoever could write a job or a report: the page escapes them. */
export interface QueuedTrial {
  id: string;
  state: QueuedTrialState;
  /** What the trial varies (`samples=8 method=mse per-channel=true`, `keep conv2 in float`). */
  label: string;
  /** The worker that runs or ran it (or, from the runs folder, the host whose staging folder holds it). */
  worker?: string;
  phase?: string;
  current?: number;
  total?: number;
  attempts?: number;
  /** ISO times. */
  queuedAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** A finished trial's run in this runs folder (a link on the page). */
  runId?: string;
  error?: string;
}

export interface QueuedTrialsView {
  /** Where the states come from: the queue itself, or what the runs folder shows of it. */
  source: 'queue' | 'runs-folder';
  /** The queue's address without its password. */
  queue?: string;
  /** Workers connected to the queue now. */
  workers?: number;
  counts: Record<QueuedTrialState, number>;
  trials: QueuedTrial[];
  /** What this source cannot see. */
  note?: string;
}

/** Reads the queued trials of the dashboard's runs folder; `startDashboard` calls it for GET /api/trials. */
export type QueuedTrialSource = () => Promise<QueuedTrialsView>;

const STATES: QueuedTrialState[] = ['waiting', 'running', 'completed', 'failed'];
const MAX_TRIALS = 500;
/** Run folders a queued trial published end in its job id's first digits (`…-q0123abcd4567`). */
const QUEUED_RUN = /-q[0-9a-f]{12}$/;
/** A run being built: `.<run id>.<pid>.partial` inside `.qforge-staging-<host>/`. */
const PARTIAL = /^\.(.+)\.(\d+)\.partial$/;
const STAGING = /^\.qforge-staging-(.+)$/;

const iso = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? undefined : new Date(ms).toISOString());
const cut = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function countStates(trials: QueuedTrial[]): Record<QueuedTrialState, number> {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<QueuedTrialState, number>;
  for (const t of trials) counts[t.state]++;
  return counts;
}

function isPlainDir(path: string): boolean {
  try {
    const st = lstatSync(path);
    return st.isDirectory() && !st.isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * What the runs folder shows of queued trials: finished ones are run folders whose report names
 * their job (`options.queue`), running ones are work folders in a host's staging folder. Waiting
 * trials exist only in the queue.
 */
export function trialsFromRunsFolder(store: RunStore): QueuedTrialsView {
  const trials: QueuedTrial[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(store.root);
  } catch {
    // No runs folder yet: nothing queued has finished.
  }
  for (const name of names) {
    const staging = STAGING.exec(name);
    if (staging && isPlainDir(join(store.root, name))) {
      let inside: string[] = [];
      try {
        inside = readdirSync(join(store.root, name));
      } catch {
        continue;
      }
      for (const entry of inside) {
        const m = PARTIAL.exec(entry);
        if (!m || !isPlainDir(join(store.root, name, entry))) continue;
        trials.push({ id: cut(m[1], 120), state: 'running', label: cut(m[1], 120), worker: cut(`${staging[1]} (process ${m[2]})`, 120) });
      }
      continue;
    }
    if (name.startsWith('.') || !RUN_ID.test(name) || !QUEUED_RUN.test(name) || !store.runDir(name)) continue;
    const { report } = store.read(name);
    const queue = report?.options.queue as { job?: unknown; worker?: unknown } | undefined;
    if (!report || typeof queue?.job !== 'string') continue;
    const failed = report.status !== 'succeeded';
    trials.push({
      id: queue.job,
      state: failed ? 'failed' : 'completed',
      label: report.command,
      ...(typeof queue.worker === 'string' ? { worker: queue.worker } : {}),
      finishedAt: iso(Date.parse(report.createdAt) + (report.durationMs ?? 0)),
      runId: name,
      ...(failed && report.error ? { error: cut(`${report.error.code}: ${report.error.message}`) } : {}),
    });
    if (trials.length >= MAX_TRIALS) break;
  }
  const order = (t: QueuedTrial) => ['running', 'waiting', 'completed', 'failed'].indexOf(t.state);
  trials.sort((a, b) => order(a) - order(b) || String(b.finishedAt ?? '').localeCompare(String(a.finishedAt ?? '')));
  return { source: 'runs-folder', counts: countStates(trials), trials, note: 'Waiting trials live only in the queue: start the dashboard with --queue to see them.' };
}

/** A trial as the queue lists it (`listTrials` of @qforge/queue gives these). */
export interface QueueListing {
  id: string;
  label: string;
  state: QueuedTrialState;
  progress?: { phase?: string; current?: number; total?: number };
  worker?: string;
  attempts?: number;
  queuedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  runDir?: string;
  failedReason?: string;
}

/**
 * A source over a queue: `read` lists the queue's trials for this runs folder (the CLI passes
 * `listTrials(url, { runsDir })`); `queue` is the address shown, already without its password.
 */
export function queueTrialSource(store: RunStore, queue: string, read: () => Promise<{ trials: QueueListing[]; workers: number; counts: Record<QueuedTrialState, number> }>): QueuedTrialSource {
  return async () => {
    const list = await read();
    const trials = list.trials.slice(0, MAX_TRIALS).map((t): QueuedTrial => {
      // A finished run trial links to its run when the run is in this folder.
      const runId = t.runDir && dirname(t.runDir) === store.root && store.runDir(basename(t.runDir)) ? basename(t.runDir) : undefined;
      return {
        id: t.id,
        state: t.state,
        label: cut(String(t.label), 200),
        ...(t.worker ? { worker: cut(String(t.worker), 120) } : {}),
        ...(t.state === 'running' && t.progress?.phase ? { phase: String(t.progress.phase), current: t.progress.current, total: t.progress.total } : {}),
        attempts: t.attempts,
        queuedAt: iso(t.queuedAt),
        startedAt: iso(t.startedAt),
        finishedAt: iso(t.finishedAt),
        ...(runId ? { runId } : {}),
        ...(t.failedReason ? { error: cut(t.failedReason) } : {}),
      };
    });
    return { source: 'queue', queue, workers: list.workers, counts: list.counts, trials };
  };
}

/** `redis://user:secret@host` → `redis://user:***@host` in any text (error messages included). */
export function redactCredentials(text: string): string {
  return text.replace(/(rediss?:\/\/[^:@/\s]*:)[^@\s]+@/g, '$1***@');
}
