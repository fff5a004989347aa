// The context every backend verb receives: progress events, cancellation and logging.
import { errAborted } from './errors';

export type RunPhase = 'load' | 'prepare' | 'calibrate' | 'quantize' | 'verify' | 'benchmark' | 'write';

/** A progress event; `total` is absent when the amount of work is unknown. */
export interface ProgressEvent {
  phase: RunPhase;
  current: number;
  total?: number;
  message?: string;
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export interface RunContext {
  signal: AbortSignal;
  logger: Logger;
  progress(event: ProgressEvent): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {} };

export function createRunContext(partial: Partial<RunContext> = {}): RunContext {
  return {
    signal: partial.signal ?? new AbortController().signal,
    logger: partial.logger ?? silentLogger,
    progress: partial.progress ?? (() => {}),
  };
}

/** Throws E_ABORTED when the run was cancelled; call between units of work. */
export function throwIfAborted(ctx: RunContext, operation: string): void {
  if (ctx.signal.aborted) throw errAborted(operation);
}
