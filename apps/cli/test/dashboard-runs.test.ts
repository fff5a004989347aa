// `qforge dashboard` runs each page-started run in its own process: a run that dies fails alone, and stopping the dashboard stops the run in progress.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, EXAMPLE } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'qforge-dashboard-runs-'));
const model = join(work, 'mnist-cnn.onnx');
cpSync(EXAMPLE, model);

interface Served {
  proc: ChildProcess;
  url: string;
  token: string;
  runsDir: string;
}

async function serve(): Promise<Served> {
  const runsDir = join(work, `runs-${Math.random().toString(36).slice(2)}`);
  mkdirSync(runsDir);
  const proc = spawn(process.execPath, [BIN, 'dashboard', '--port', '0', '--runs-dir', runsDir, '--allow', work], { cwd: work, env: { ...process.env, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8');
  const m = await new Promise<RegExpExecArray>((done, fail) => {
    proc.stdout!.on('data', (c: string) => {
      out += c;
      const hit = /on (http:\/\/[^/\s]+)\/\?token=(\S+)/.exec(out);
      if (hit) done(hit);
    });
    proc.once('exit', (code) => fail(new Error(`dashboard exited (${code}) before serving: ${out}`)));
  });
  return { proc, url: m[1], token: decodeURIComponent(m[2]), runsDir };
}

async function start(s: Served, samples: number): Promise<string> {
  const r = await fetch(`${s.url}/api/runs`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-qforge-token': s.token }, body: JSON.stringify({ model, data: 'mnist:calib', samples, evalData: 'mnist:test', evalSamples: samples }) });
  expect(r.status).toBe(202);
  return (await r.json()).events;
}

/** The last event of a job's stream (the stream ends with done or failed). */
async function outcome(s: Served, events: string): Promise<{ type: string; runId?: string; error?: { code: string; message: string } }> {
  const text = await (await fetch(`${s.url}${events}`)).text();
  const last = text.trim().split('\n\n').at(-1)!;
  return JSON.parse(last.slice(last.indexOf('data: ') + 6));
}

/** The processes the dashboard started (its runs). */
const childrenOf = (pid: number) =>
  spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);

async function runningChild(pid: number): Promise<number> {
  for (let i = 0; i < 600; i++) {
    const [child] = childrenOf(pid);
    if (child) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no run process appeared');
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const partials = (runsDir: string) => readdirSync(runsDir).filter((f) => f.endsWith('.partial'));

describe('qforge dashboard: runs in child processes', () => {
  it('a run whose process is killed fails alone: the server answers, the next run succeeds, no work folder stays', async () => {
    const s = await serve();
    try {
      const events = await start(s, 5000);
      const child = await runningChild(s.proc.pid!);
      await new Promise((r) => setTimeout(r, 1000));
      process.kill(child, 'SIGKILL');
      expect(await outcome(s, events)).toEqual({ type: 'failed', error: expect.objectContaining({ code: 'E_RUNTIME_FAILED', message: expect.stringMatching(/killed by SIGKILL/) }) });
      expect((await fetch(`${s.url}/api/runs`)).status).toBe(200);
      expect(partials(s.runsDir)).toEqual([]);
      const done = await outcome(s, await start(s, 8));
      expect(done).toMatchObject({ type: 'done', runId: expect.any(String) });
      const report = JSON.parse(readFileSync(join(s.runsDir, done.runId!, 'report.json'), 'utf8'));
      expect(report).toMatchObject({ status: 'succeeded', command: expect.stringMatching(/^quantize /) });
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('SIGTERM stops the dashboard and the run in progress: no process and no work folder stays', async () => {
    const s = await serve();
    await start(s, 5000);
    const child = await runningChild(s.proc.pid!);
    await new Promise((r) => setTimeout(r, 1000));
    const exited = new Promise<number | null>((done) => s.proc.once('exit', (code) => done(code)));
    s.proc.kill('SIGTERM');
    const timer = setTimeout(() => s.proc.kill('SIGKILL'), 30000);
    await exited;
    clearTimeout(timer);
    expect(alive(child)).toBe(false);
    expect(partials(s.runsDir)).toEqual([]);
  });
});
