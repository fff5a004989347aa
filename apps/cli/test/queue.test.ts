// Sweeps through a real redis-server and real `qforge worker` processes (skipped without redis-server).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisServerAvailable, startLocalRedis, type LocalRedis } from '@qforge/queue';
import { BIN, EXAMPLE, qforge } from './helpers';

const haveRedis = redisServerAvailable();
const withRedis = haveRedis ? describe : describe.skip;
if (!haveRedis) console.warn('queued sweep tests skipped: redis-server is not installed (apt-get install redis-server; .ci/run does)');

interface WorkerProcess {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

function startWorker(url: string, name: string): WorkerProcess {
  const child = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--name', name, '--lock-ms', '5000'], {
    env: { ...process.env, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, log: () => log, exited };
}

async function until(what: string, check: () => boolean, timeoutMs = 60000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs the CLI without blocking the event loop, so the test can signal workers meanwhile. */
function qforgeAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')) }, cwd: mkdtempSync(join(tmpdir(), 'qforge-cli-')) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function stopWorkers(ws: WorkerProcess[]): Promise<void> {
  for (const w of ws) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  await Promise.all(ws.map((w) => w.exited));
}

type Row = { runDir: string; samples: number; method: string; snrDb: number; accuracy: number; machine: string; error?: string };
const grid = (evalSamples: string, samples = '8,16', methods = 'minmax,mse') => ['sweep', EXAMPLE, '--data', 'mnist:calib', '--eval-data', 'mnist:test', '--samples', samples, '--method', methods, '--eval-samples', evalSamples, '--benchmark-runs', '3', '--json'];

withRedis('sweeps through the queue', () => {
  let redis: LocalRedis;
  const workers: WorkerProcess[] = [];
  beforeAll(async () => {
    redis = await startLocalRedis();
  });
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('two workers give the same rows (calibration tables, fidelity) as the in-process sweep, each row naming its machine', async () => {
    const own = [startWorker(redis.url, 'w1'), startWorker(redis.url, 'w2')];
    workers.push(...own);
    const localRuns = mkdtempSync(join(tmpdir(), 'qforge-local-'));
    const queuedRuns = mkdtempSync(join(tmpdir(), 'qforge-queued-'));
    const local = qforge([...grid('50'), '--runs-dir', localRuns]);
    expect(local.code).toBe(0);
    const queued = await qforgeAsync([...grid('50'), '--runs-dir', queuedRuns, '--queue', redis.url]);
    expect(queued.code).toBe(0);
    const l: Row[] = local.json().rows;
    const q: Row[] = JSON.parse(queued.stdout).rows;
    expect(q.map((x) => x.error ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(q.map((r) => `${r.samples}/${r.method}`)).toEqual(l.map((r) => `${r.samples}/${r.method}`));
    for (let i = 0; i < l.length; i++) {
      expect(q[i].snrDb).toBe(l[i].snrDb);
      expect(q[i].accuracy).toBe(l[i].accuracy);
      const table = (dir: string) => JSON.parse(readFileSync(join(dir, 'calibration.json'), 'utf8')).tensors;
      expect(table(q[i].runDir)).toEqual(table(l[i].runDir));
      expect(q[i].machine).toMatch(/^w[12]@/);
    }
    // Both workers took trials, and the reports name the worker that ran them.
    expect(new Set(q.map((r) => r.machine.split('@')[0]))).toEqual(new Set(['w1', 'w2']));
    const report = JSON.parse(readFileSync(join(q[0].runDir, 'report.json'), 'utf8'));
    expect(report.options.queue.worker).toMatch(/^w[12]$/);
    expect(JSON.stringify(report)).not.toContain('redis://');
    // A rerun adds the same job ids: the rows come back without any new run.
    const again = await qforgeAsync([...grid('50'), '--runs-dir', queuedRuns, '--queue', redis.url]);
    expect(JSON.parse(again.stdout).rows.map((r: Row) => r.runDir)).toEqual(q.map((r) => r.runDir));
    expect(readdirSync(queuedRuns).filter((n) => !n.startsWith('.'))).toHaveLength(4);
    await stopWorkers(own);
  }, 240000);

  it('a worker killed with SIGKILL mid-trial leaves every row present exactly once', async () => {
    const runs = mkdtempSync(join(tmpdir(), 'qforge-killed-'));
    const [w1, w2] = [startWorker(redis.url, 'k1'), startWorker(redis.url, 'k2')];
    workers.push(w1, w2);
    const before = 0;
    const sweep = qforgeAsync([...grid('40'), '--runs-dir', runs, '--queue', redis.url]);
    await until('w1 to take a trial', () => /attempt 1/.test(w1.log().slice(before)));
    w1.child.kill('SIGKILL');
    const r = await sweep;
    expect(r.code).toBe(0);
    const rows: Row[] = JSON.parse(r.stdout).rows;
    expect(rows.map((x) => `${x.samples}/${x.method}`)).toEqual(['8/minmax', '8/mse', '16/minmax', '16/mse']);
    expect(rows.map((x) => x.error ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(rows.every((x) => !x.error && existsSync(join(x.runDir, 'report.json')))).toBe(true);
    // The lost trial went to k2; no trial has two folders, and no half-written folder is visible.
    const dirs = readdirSync(runs).filter((n) => !n.startsWith('.'));
    expect(dirs.sort()).toEqual(rows.map((x) => x.runDir.split('/').pop()!).sort());
    const jobs = dirs.map((d) => JSON.parse(readFileSync(join(runs, d, 'report.json'), 'utf8')).options.queue.job);
    expect(new Set(jobs).size).toBe(4);
    expect(w2.log()).toMatch(/attempt 2/);
    await stopWorkers([w2]);
  }, 240000);

  it('SIGTERM hands the trial in progress back and the worker exits 0', async () => {
    const runs = mkdtempSync(join(tmpdir(), 'qforge-term-'));
    const w2 = startWorker(redis.url, 't1');
    workers.push(w2);
    const before = 0;
    const sweep = qforgeAsync([...grid('30', '8', 'minmax'), '--runs-dir', runs, '--queue', redis.url]);
    let finished = false;
    void sweep.then(() => (finished = true));
    await until('w2 to take the trial', () => finished || /attempt 1/.test(w2.log().slice(before)));
    expect(finished).toBe(false);
    w2.child.kill('SIGTERM');
    expect(await w2.exited).toBe(0);
    expect(w2.log()).toMatch(/released to the queue/);
    const w3 = startWorker(redis.url, 't2');
    workers.push(w3);
    const r = await sweep;
    expect(r.code).toBe(0);
    const rows: Row[] = JSON.parse(r.stdout).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0].machine).toMatch(/^t2@/);
    await stopWorkers([w3]);
  }, 240000);

  it('a stopped queue gives E_QUEUE_UNAVAILABLE quickly, for the sweep and for a worker, without the password', async () => {
    const stopped = await startLocalRedis();
    await stopped.stop();
    const url = `redis://:s3cret@127.0.0.1:${stopped.port}`;
    const t0 = Date.now();
    const r = qforge([...grid('10'), '--queue', url]);
    expect(r.code).toBe(2);
    expect(r.json().error.code).toBe('E_QUEUE_UNAVAILABLE');
    expect(r.stdout).not.toContain('s3cret');
    const w = qforge(['worker', '--queue', url, '--json']);
    expect(w.code).toBe(2);
    expect(w.json().error.code).toBe('E_QUEUE_UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(30000);
    // What is not a redis URL at all is an option error, not an unreachable queue.
    expect(qforge(['worker', '--queue', 'http://127.0.0.1:1', '--json']).json().error.code).toBe('E_INVALID_OPTION');
  });
});
