// Runs started from the page: a bounded queue, one run at a time by default, progress kept for server-sent events.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createRunContext, errAborted, toQforgeError, type ProgressEvent, type QforgeErrorJson, type RunContext } from '@qforge/core';

/** What a user may ask for when starting a run (paths already checked against the allowed folders). */
export interface StartRunRequest {
  model: string;
  data: string;
  evalData?: string;
  backend: string;
  target: string;
  mode: 'static' | 'dynamic' | 'weight-only';
  /** `auto`: the target's method, and the run may change it (recovery and latency searches), as the CLI without --method. */
  method: 'auto' | 'minmax' | 'percentile' | 'entropy' | 'mse';
  samples: number;
  evalSamples: number;
  /** The CLI's data options, same spelling and meaning as its flags (--input-shape, --image-size, --layout, --mean, --std, --resize). */
  inputShape?: string[];
  imageSize?: string;
  layout?: 'NCHW' | 'NHWC';
  mean?: string;
  std?: string;
  resize?: 'cover' | 'contain' | 'fill' | 'pad';
}

/**
 * Supplied by the host (the CLI): runs the quantize pipeline and returns the new run's id. It must
 * stop when `ctx.signal` aborts. {@link childRunLauncher} runs each request in a child process.
 */
export type RunLauncher = (request: StartRunRequest, ctx: RunContext) => Promise<{ runId: string }>;

export type JobEvent =
  | { type: 'queued'; position: number }
  | { type: 'progress'; progress: ProgressEvent }
  | { type: 'done'; runId: string }
  | { type: 'failed'; error: QforgeErrorJson & { runId?: string } };

export interface Job {
  id: string;
  request: StartRunRequest;
  state: 'queued' | 'running' | 'done' | 'failed';
  events: JobEvent[];
  emitter: EventEmitter;
}

export interface JobQueueOptions {
  /** Runs executing at once. @defaultValue 1 */
  concurrency?: number;
  /** Runs that may wait; beyond that `start` refuses. @defaultValue 8 */
  maxQueued?: number;
  /** Finished jobs kept for their event streams. @defaultValue 100 */
  keepFinished?: number;
}

/**
 * Runs started from the page, one at a time by default: each run uses every core it is given, so
 * parallel runs only slow each other down, and an unbounded queue lets one page exhaust the machine.
 */
export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: { job: Job; run: () => void; push: (e: JobEvent) => void }[] = [];
  /** Running jobs: how to cancel each, and when it has settled. */
  private readonly active = new Map<string, { controller: AbortController; settled: Promise<void> }>();
  private closed = false;
  private running = 0;
  private readonly concurrency: number;
  private readonly maxQueued: number;
  private readonly keepFinished: number;

  constructor(
    private readonly launch: RunLauncher,
    options: JobQueueOptions = {},
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.maxQueued = Math.max(0, options.maxQueued ?? 8);
    this.keepFinished = options.keepFinished ?? 100;
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Runs waiting for a slot. */
  get pending(): number {
    return this.waiting.length;
  }

  /** 0 when running, n when n runs are ahead of it, undefined when finished or unknown. */
  position(id: string): number | undefined {
    const job = this.jobs.get(id);
    if (job?.state === 'running') return 0;
    const i = this.waiting.findIndex((w) => w.job.id === id);
    return i < 0 ? undefined : i + 1;
  }

  /** Queues a run; undefined when the queue is full. */
  start(request: StartRunRequest): Job | undefined {
    if (this.closed || (this.running >= this.concurrency && this.waiting.length >= this.maxQueued)) return undefined;
    const job: Job = { id: randomUUID(), request, state: 'queued', events: [], emitter: new EventEmitter() };
    this.jobs.set(job.id, job);
    const push = (e: JobEvent) => {
      job.events.push(e);
      job.emitter.emit('event', e);
    };
    let last = 0;
    const controller = new AbortController();
    const ctx = createRunContext({
      signal: controller.signal,
      progress: (p) => {
        // Progress can be per sample; a few updates a second are plenty for a page.
        const now = Date.now();
        if (p.total && p.current < p.total && now - last < 100) return;
        last = now;
        push({ type: 'progress', progress: p });
      },
    });
    const run = () => {
      this.running++;
      job.state = 'running';
      // A launcher that throws synchronously still ends as a failed job, never an unhandled error.
      const settled = Promise.resolve()
        .then(() => this.launch(request, ctx))
        .then(
          ({ runId }) => {
            job.state = 'done';
            push({ type: 'done', runId });
          },
          (e: unknown) => {
            job.state = 'failed';
            const err = toQforgeError(e);
            // The run folder a failed run still wrote: from the pipeline's error, or as a child reported it.
            const failed = e as { report?: { runId?: string }; runId?: string };
            push({ type: 'failed', error: { ...err.toJSON(), runId: failed.report?.runId ?? failed.runId } });
          },
        )
        .finally(() => {
          this.running--;
          this.active.delete(job.id);
          this.forgetOld();
          if (!this.closed) this.waiting.shift()?.run();
        });
      this.active.set(job.id, { controller, settled });
    };
    if (this.running < this.concurrency) run();
    else {
      this.waiting.push({ job, run, push });
      push({ type: 'queued', position: this.waiting.length });
    }
    return job;
  }

  /**
   * Stops for good: waiting runs fail as cancelled, running ones are cancelled (a child-process run
   * is killed); resolves when every running launch has settled.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const { job, push } of this.waiting.splice(0)) {
      job.state = 'failed';
      push({ type: 'failed', error: errAborted('the run (the dashboard stopped)').toJSON() });
    }
    const running = [...this.active.values()];
    for (const r of running) r.controller.abort();
    await Promise.all(running.map((r) => r.settled));
  }

  private forgetOld(): void {
    const finished = [...this.jobs.values()].filter((j) => j.state === 'done' || j.state === 'failed');
    for (const j of finished.slice(0, Math.max(0, finished.length - this.keepFinished))) this.jobs.delete(j.id);
  }
}
