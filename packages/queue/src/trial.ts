// What travels through the queue: one trial's job data and its result.
import type { MachineInfo } from './machine';

/** One trial as a job: the model (path + SHA-256), its kind, and a JSON spec the kind's handler reads. */
export interface TrialJobData {
  kind: string;
  /** Absolute path; workers must read the same file there (a shared folder). */
  model: string;
  modelSha256: string;
  /** The shared runs folder the trial's run directory goes to. */
  runsDir: string;
  /** Short human label for progress lines (`samples=8 method=mse`). */
  label: string;
  spec: unknown;
}

export interface TrialJobResult<R = unknown> {
  result: R;
  /** The machine that ran (and, for benchmarks, measured) the trial. */
  machine: MachineInfo;
  durationMs: number;
  /** 1 for the first try; more when a worker was lost or a transient error was retried. */
  attempt: number;
}

/** A trial's progress as workers publish it through the queue's events. */
export interface TrialProgress {
  worker: string;
  phase: string;
  current: number;
  total?: number;
  message?: string;
}
