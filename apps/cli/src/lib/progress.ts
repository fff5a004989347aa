// Progress bars on stderr (never stdout, so --json stays clean); silent when stderr is not a terminal.
import { SingleBar, Presets } from 'cli-progress';
import { createRunContext, errAborted, removeActiveWorkDirs, type Logger, type ProgressEvent, type RunContext } from '@qforge/core';

/** Signals that cancel a run, and the conventional exit code (128 + signal number) for each. */
export const CANCEL_SIGNALS = { SIGINT: 130, SIGHUP: 129, SIGTERM: 143 } as const;
type CancelSignal = keyof typeof CANCEL_SIGNALS;
/** How long a cancelled run may take to stop at its next check before the process stops anyway. */
const GRACE_MS = 5000;

let received: CancelSignal | undefined;

/** The signal that cancelled the current command, if one did (decides the exit code). */
export function cancelSignal(): CancelSignal | undefined {
  return received;
}

/** Stops now: removes unfinished run folders, says why (JSON with --json) and exits 128 + signal. */
function stopNow(signal: CancelSignal): never {
  removeActiveWorkDirs();
  const err = errAborted(`the command (${signal})`);
  if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ error: err.toJSON() }, null, 2) + '\n');
  else process.stderr.write(`error ${err.code}: ${err.message}\nhint: ${err.hint}\n`);
  process.exit(CANCEL_SIGNALS[signal]);
}

/** One `debug: …` line on stderr (--verbose). */
export function writeDebug(message: string): void {
  process.stderr.write(`debug: ${message.replace(/\n/g, '\ndebug: ')}\n`);
}

/**
 * The run context of a command: progress bars on a terminal, the logger, cancellation by signal.
 * `verbose` (--verbose) turns on debug lines: the backends' and pipeline's own, and each phase's
 * start and duration.
 */
export function cliRunContext(options: { quiet?: boolean; verbose?: boolean } = {}): { ctx: RunContext; stop: () => void } {
  const tty = Boolean(process.stderr.isTTY) && !options.quiet;
  let bar: SingleBar | undefined;
  let phase = '';
  let timedPhase: { name: string; first: number; last: number; events: number } | undefined;
  const endPhase = () => {
    if (timedPhase) writeDebug(`phase ${timedPhase.name}: ${timedPhase.last - timedPhase.first} ms from its first to its last progress event (${timedPhase.events})`);
    timedPhase = undefined;
  };
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  const progress = (e: ProgressEvent) => {
    if (options.verbose) {
      if (timedPhase?.name !== e.phase) {
        endPhase();
        timedPhase = { name: e.phase, first: Date.now(), last: Date.now(), events: 0 };
        writeDebug(`phase ${e.phase} started${e.total ? ` (${e.total} steps)` : ''}${e.message ? `: ${e.message}` : ''}`);
      }
      timedPhase.events++;
      timedPhase.last = Date.now();
    }
    if (!tty) return;
    if (e.phase !== phase || !bar) {
      stop();
      phase = e.phase;
      if (e.total) {
        bar = new SingleBar({ stream: process.stderr, format: `${e.phase.padEnd(9)} [{bar}] {value}/{total} {eta_formatted}`, hideCursor: true, clearOnComplete: true }, Presets.shades_classic);
        bar.start(e.total, e.current);
      } else if (e.message) process.stderr.write(`${e.phase.padEnd(9)} ${e.message}\n`);
      return;
    }
    bar.update(e.current);
  };
  const logger: Logger = {
    debug: (m) => {
      if (options.verbose) writeDebug(m);
    },
    info: (m) => !options.quiet && process.stderr.write(`${m}\n`),
    warn: (m) => process.stderr.write(`warning: ${m}\n`),
  };
  const controller = new AbortController();
  // SIGTERM and SIGHUP cancel like Ctrl+C: the run stops at its next check and records E_ABORTED;
  // a second signal, or a run that does not stop within GRACE_MS, stops the process at once.
  const onSignal = (signal: CancelSignal) => {
    if (received) stopNow(signal);
    received = signal;
    bar?.stop();
    process.stderr.write(`${signal}: cancelling (send it again to stop at once)\n`);
    controller.abort();
    setTimeout(() => stopNow(signal), GRACE_MS).unref();
  };
  const signals = Object.keys(CANCEL_SIGNALS) as CancelSignal[];
  for (const s of signals) process.on(s, onSignal);
  const stopAll = () => {
    if (options.verbose) endPhase();
    stop();
    for (const s of signals) process.off(s, onSignal);
  };
  return { ctx: createRunContext({ progress, logger, signal: controller.signal }), stop: stopAll };
}
