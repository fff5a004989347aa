// Running external SDK probes (python, CLIs) with a timeout: a probe never hangs or throws.
import { spawn } from 'node:child_process';

export interface ProbeResult {
  ok: boolean;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the command could not start (not on PATH, not executable). */
  spawnError?: string;
}

export function runProbe(command: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 10000;
  return new Promise((resolvePromise) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const done = (r: ProbeResult) => {
      if (!settled) {
        settled = true;
        resolvePromise(r);
      }
    };
    let child: ReturnType<typeof spawn>;
    try {
      // Own process group, so a timeout kills the probe's children too (they would hold the pipes open).
      child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (e) {
      return done({ ok: false, exitCode: null, stdout, stderr, timedOut, spawnError: (e as Error).message });
    }
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      done({ ok: false, exitCode: null, stdout, stderr, timedOut });
    }, timeoutMs);
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      done({ ok: false, exitCode: null, stdout, stderr, timedOut, spawnError: e.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ ok: code === 0 && !timedOut, exitCode: code, stdout, stderr, timedOut });
    });
  });
}
