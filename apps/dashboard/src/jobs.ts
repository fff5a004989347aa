// Runs started from the page: one job per POST, progress kept for server-sent events.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createRunContext, toQforgeError, type ProgressEvent, type QforgeErrorJson, type RunContext } from '@qforge/core';

/** What a user may ask for when starting a run (paths already checked against the allowed folders). */
export interface StartRunRequest {
  model: string;
  data: string;
  evalData?: string;
  backend: string;
  target: string;
  mode: 'static' | 'dynamic';
  method: 'minmax' | 'percentile' | 'entropy' | 'mse';
  samples: number;
  evalSamples: number;
}

/** Supplied by the host (the CLI): runs the quantize pipeline and returns the new run's id. */
export type RunLauncher = (request: StartRunRequest, ctx: RunContext) => Promise<{ runId: string }>;

export type JobEvent = { type: 'progress'; progress: ProgressEvent } | { type: 'done'; runId: string } | { type: 'failed'; error: QforgeErrorJson & { runId?: string } };

export interface Job {
  id: string;
  request: StartRunRequest;
  state: 'running' | 'done' | 'failed';
  events: JobEvent[];
  emitter: EventEmitter;
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  constructor(private readonly launch: RunLauncher) {}

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  start(request: StartRunRequest): Job {
    const job: Job = { id: randomUUID(), request, state: 'running', events: [], emitter: new EventEmitter() };
    this.jobs.set(job.id, job);
    const push = (e: JobEvent) => {
      job.events.push(e);
      job.emitter.emit('event', e);
    };
    let last = 0;
    const ctx = createRunContext({
      progress: (p) => {
        // Progress can be per sample; a few updates a second are plenty for a page.
        const now = Date.now();
        if (p.total && p.current < p.total && now - last < 100) return;
        last = now;
        push({ type: 'progress', progress: p });
      },
    });
    this.launch(request, ctx).then(
      ({ runId }) => {
        job.state = 'done';
        push({ type: 'done', runId });
      },
      (e: unknown) => {
        job.state = 'failed';
        const err = toQforgeError(e);
        push({ type: 'failed', error: { ...err.toJSON(), runId: (e as { report?: { runId?: string } }).report?.runId } });
      },
    );
    return job;
  }
}
