// Runs started from the page execute in a child process: a run that crashes, exits or hangs cannot take the server down.
import { fork } from 'node:child_process';
import { QforgeError, createRunContext, errAborted, errRuntimeFailed, removeStalePartials, toQforgeError, type ProgressEvent, type QforgeErrorJson, type RunContext } from '@qforge/core';
import type { RunLauncher, StartRunRequest } from './jobs';

/** What the server sends the child: one run, with the host's settings. */
interface RunMessage {
  type: 'run';
  request: StartRunRequest;
  init: unknown;
}

/** What the child sends back while and after running. */
type ChildMessage =
  | { type: 'progress'; progress: ProgressEvent }
  | { type: 'log'; level: 'debug' | 'info' | 'warn'; message: string }
  | { type: 'done'; runId: string }
  | { type: 'failed'; error: QforgeErrorJson; runId?: string };

/** The run a child executes: the host's launcher, given the `init` the server was configured with. */
export type ChildRunFunction = (request: StartRunRequest, ctx: RunContext, init: unknown) => Promise<{ runId: string }>;

export interface ChildRunLauncherOptions {
  /** The module each run's child process executes; it calls {@link serveRunInChild}. */
  module: string;
  /** Handed to the module's run function with every run (JSON): what it needs to find backends, where runs go. */
  init?: unknown;
  /** The runs folder: the hidden work folder of a child that died is removed from it. */
  runsDir?: string;
  /** How long a cancelled child may take to stop before it is killed. @defaultValue 3000 */
  killGraceMs?: number;
  /** Node options of the child. @defaultValue [] (not the server's own) */
  execArgv?: string[];
}

/** The last bytes of what a child wrote to stderr: the message of an uncaught error or a native crash. */
const STDERR_TAIL_BYTES = 2000;

/** A failed run's error from the child's JSON, with the run it recorded (the queue reports it). */
function fromJson(json: QforgeErrorJson, runId: string | undefined): QforgeError {
  const e = new QforgeError(json.code, json.message, { hint: json.hint, context: json.context });
  return runId ? Object.assign(e, { runId }) : e;
}

/**
 * A {@link RunLauncher} that runs each request in a new child process (`fork` of `module`), so a
 * run that crashes, calls `process.exit`, throws asynchronously or runs out of memory fails as
 * that job only (E_RUNTIME_FAILED with the exit and the child's last stderr) and the server keeps
 * answering. Cancelling the run's context (the server shutting down) kills the child: SIGTERM,
 * then SIGKILL after `killGraceMs`; the promise settles only once the child is gone.
 */
export function childRunLauncher(options: ChildRunLauncherOptions): RunLauncher {
  const grace = options.killGraceMs ?? 3000;
  return (request, ctx) =>
    new Promise((resolve, reject) => {
      if (ctx.signal.aborted) return reject(errAborted('the run'));
      const child = fork(options.module, [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: options.execArgv ?? [], serialization: 'json' });
      let outcome: { runId: string } | QforgeError | undefined;
      let stderr = '';
      let settled = false;
      let lingerTimer: NodeJS.Timeout | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      child.stdout?.resume();
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-STDERR_TAIL_BYTES);
      });
      const kill = () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        killTimer ??= setTimeout(() => child.kill('SIGKILL'), grace);
      };
      ctx.signal.addEventListener('abort', kill, { once: true });
      child.on('message', (m: ChildMessage) => {
        if (m?.type === 'progress') ctx.progress(m.progress);
        else if (m?.type === 'log' && (m.level === 'debug' || m.level === 'info' || m.level === 'warn')) ctx.logger[m.level](String(m.message));
        else if (m?.type === 'done' && typeof m.runId === 'string') outcome = { runId: m.runId };
        else if (m?.type === 'failed' && m.error?.code) outcome = fromJson(m.error, m.runId);
        // A child that answered but does not exit (a runtime thread holding it) is stopped.
        if (outcome) lingerTimer ??= setTimeout(kill, grace);
      });
      // Every error is handled (an unhandled one would end the server): a fork that never started
      // settles here (no exit event follows); a send to a child that already died waits for its exit.
      child.on('error', (e) => {
        if (child.pid === undefined) settle(errRuntimeFailed('dashboard', 'starting the run', e.message));
      });
      child.once('exit', (code, signal) => {
        if (options.runsDir) removeStalePartials(options.runsDir);
        if (outcome) return settle(outcome);
        if (ctx.signal.aborted) return settle(errAborted('the run'));
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const last = stderr.trim().split('\n').slice(-6).join('\n');
        settle(errRuntimeFailed(request.backend, 'the run', `its process ${how} before finishing${last ? `; its last output:\n${last}` : ''}`, { exitCode: code, signal }));
      });
      child.send({ type: 'run', request, init: options.init ?? null } satisfies RunMessage);
      function settle(result: { runId: string } | QforgeError) {
        if (settled) return;
        settled = true;
        clearTimeout(lingerTimer);
        clearTimeout(killTimer);
        ctx.signal.removeEventListener('abort', kill);
        if (result instanceof Error) reject(result);
        else resolve(result);
      }
    });
}

/**
 * The child side: waits for the server's run, executes it with `run`, reports progress, logs and
 * the outcome, then exits. It stops at once when the server goes away (its IPC channel closes) or
 * sends SIGTERM; the exit removes the run's unfinished work folder.
 */
export function serveRunInChild(run: ChildRunFunction): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error('serveRunInChild: this module is meant to be started by childRunLauncher (no IPC channel)');
  const post = (m: ChildMessage) => new Promise<void>((done) => send(m, undefined, {}, () => done()));
  const controller = new AbortController();
  process.once('disconnect', () => process.exit(143));
  process.once('SIGTERM', () => process.exit(143));
  process.once('message', (m: RunMessage) => {
    if (m?.type !== 'run') return process.exit(2);
    const ctx = createRunContext({
      signal: controller.signal,
      progress: (progress) => void post({ type: 'progress', progress }),
      logger: {
        debug: (message) => void post({ type: 'log', level: 'debug', message }),
        info: (message) => void post({ type: 'log', level: 'info', message }),
        warn: (message) => void post({ type: 'log', level: 'warn', message }),
      },
    });
    Promise.resolve()
      .then(() => run(m.request, ctx, m.init))
      .then(
        ({ runId }) => post({ type: 'done', runId }),
        (e: unknown) => post({ type: 'failed', error: toQforgeError(e).toJSON(), runId: (e as { report?: { runId?: string } }).report?.runId }),
      )
      .finally(() => process.exit(0));
  });
}
