// Sweeps, sensitivity and accuracy search through a real redis-server and real `qforge worker` processes (skipped without redis-server).
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

/** 2 s locks: a killed worker's trial is taken over within about 4 s (MNIST trials never pause the event loop that long). */
function startWorker(url: string, name: string): WorkerProcess {
  const child = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--name', name, '--lock-ms', '2000'], {
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

/** Runs the CLI without blocking the event loop, so the test can signal workers (or run another command) meanwhile. */
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

/** `qforge dashboard` in the background; `trials()` reads its /api/trials. */
async function startDashboardProcess(args: string[]): Promise<{ child: ChildProcess; trials: () => Promise<{ source: string; trials: { state: string; label: string; worker?: string; runId?: string }[] }> }> {
  const child = spawn(process.execPath, [BIN, 'dashboard', ...args], { env: { ...process.env, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.resume();
  await until('the dashboard to listen', () => /qforge dashboard on http:\/\/[^/\s]+/.test(out));
  const base = /qforge dashboard on (http:\/\/[^/\s]+)/.exec(out)![1];
  return { child, trials: async () => (await fetch(`${base}/api/trials`)).json() };
}

type Row = { runDir: string; samples: number; method: string; snrDb: number; accuracy: number; machine: string; error?: string };
const grid = (evalSamples: string, samples = '8,16', methods = 'minmax,mse') => ['sweep', EXAMPLE, '--data', 'mnist:calib', '--eval-data', 'mnist:test', '--samples', samples, '--method', methods, '--eval-samples', evalSamples, '--benchmark-runs', '3', '--json'];

withRedis('sweeps, sensitivity and accuracy search through the queue', () => {
  let redis: LocalRedis;
  const workers: WorkerProcess[] = [];
  // Two workers serve the sweep, sensitivity and search tests; the SIGKILL test then kills one of them.
  let w1: WorkerProcess;
  let w2: WorkerProcess;
  beforeAll(async () => {
    redis = await startLocalRedis();
    [w1, w2] = [startWorker(redis.url, 'w1'), startWorker(redis.url, 'w2')];
    workers.push(w1, w2);
  });
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('two workers give the same rows (calibration tables, fidelity) as the in-process sweep, each row naming its machine', async () => {
    const localRuns = mkdtempSync(join(tmpdir(), 'qforge-local-'));
    const queuedRuns = mkdtempSync(join(tmpdir(), 'qforge-queued-'));
    // The in-process sweep runs beside the queued one (the workers are separate processes either way).
    const [local, queued] = await Promise.all([qforgeAsync([...grid('50'), '--runs-dir', localRuns]), qforgeAsync([...grid('50'), '--runs-dir', queuedRuns, '--queue', redis.url])]);
    expect(local.code).toBe(0);
    expect(queued.code).toBe(0);
    const l: Row[] = JSON.parse(local.stdout).rows;
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
  }, 240000);

  it('sensitivity through the queue gives the in-process ranking, number for number, and reruns from finished trials', async () => {
    const args = ['sensitivity', EXAMPLE, '--data', 'mnist:calib', '--eval-data', 'mnist:test', '--samples', '16', '--eval-samples', '40', '--json'];
    const localRuns = mkdtempSync(join(tmpdir(), 'qforge-sens-local-'));
    const queuedRuns = mkdtempSync(join(tmpdir(), 'qforge-sens-queued-'));
    const [local, queued] = await Promise.all([qforgeAsync([...args, '--runs-dir', localRuns]), qforgeAsync([...args, '--runs-dir', queuedRuns, '--queue', redis.url])]);
    expect(local.code).toBe(0);
    expect(queued.code).toBe(0);
    const { runDir: lDir, ...l } = JSON.parse(local.stdout);
    const { runDir: qDir, ...q } = JSON.parse(queued.stdout);
    // Baseline, every node's two scores, the ranking and the rank agreement: identical.
    expect(q).toEqual(l);
    expect(l.layers.map((x: { node: string }) => x.node).sort()).toEqual(['conv1', 'conv2', 'fc1', 'logits']);
    // Progress came from the queue (1 baseline + 2 × 4 node trials), and the report names the workers, not the URL.
    expect(queued.stderr).toMatch(/trials 8\/8 done/);
    const report = JSON.parse(readFileSync(join(qDir, 'report.json'), 'utf8'));
    expect(report.options.queue.trials).toBe(9);
    expect(report.options.queue.workers.join(' ')).toMatch(/^w[12]@/);
    expect(JSON.parse(readFileSync(join(lDir, 'report.json'), 'utf8')).options.queue).toBeUndefined();
    // The variants read the calibration table the command shared by its SHA-256.
    expect(readdirSync(join(queuedRuns, '.qforge-tables'))).toEqual([expect.stringMatching(/^[0-9a-f]{64}\.json$/)]);
    // A rerun finds every trial finished under the same job ids: no worker runs anything.
    const trialsBefore = (w1.log() + w2.log()).match(/ done in /g)?.length ?? 0;
    const again = await qforgeAsync([...args, '--runs-dir', queuedRuns, '--queue', redis.url]);
    const { runDir: _again, ...a } = JSON.parse(again.stdout);
    expect(a).toEqual(l);
    expect((w1.log() + w2.log()).match(/ done in /g)?.length ?? 0).toBe(trialsBefore);
  }, 240000);

  it('quantize --accuracy-target through the queue takes the same search path and writes the same model as in-process', async () => {
    // Out of reach, so the search goes through every stage: methods, sensitivity, two nodes in float.
    const args = ['quantize', EXAMPLE, '--data', 'mnist:calib', '--eval-data', 'mnist:test', '--samples', '16', '--eval-samples', '40', '--accuracy-target', 'snr>=90', '--max-float-share', '0.5', '--no-benchmark', '--no-latency-search', '--json'];
    const [local, queued] = await Promise.all([qforgeAsync([...args, '--runs-dir', mkdtempSync(join(tmpdir(), 'qforge-search-local-'))]), qforgeAsync([...args, '--runs-dir', mkdtempSync(join(tmpdir(), 'qforge-search-queued-')), '--queue', redis.url])]);
    expect(local.code).toBe(1);
    expect(queued.code).toBe(1);
    const l = JSON.parse(local.stdout).report;
    const q = JSON.parse(queued.stdout).report;
    expect(q.search).toEqual(l.search);
    expect(q.search.path.map((p: { step: string }) => p.step)).toEqual(['method minmax', 'method percentile', 'method entropy', 'method mse', expect.stringMatching(/^keep \w+ in float$/), expect.stringMatching(/^keep \w+ in float$/)]);
    expect(q.verify).toEqual(l.verify);
    expect(q.output.sha256).toBe(l.output.sha256);
    expect(q.options.queue.workers.join(' ')).toMatch(/^w[12]@/);
    expect(l.options.queue).toBeUndefined();
    // A target met by the first method: the queued search stops there too.
    const easy = ['quantize', EXAMPLE, '--data', 'mnist:calib', '--eval-data', 'mnist:test', '--samples', '16', '--eval-samples', '40', '--accuracy-target', 'snr>=20', '--no-benchmark', '--no-latency-search', '--json', '--runs-dir', mkdtempSync(join(tmpdir(), 'qforge-search-easy-')), '--queue', redis.url];
    const met = await qforgeAsync(easy);
    expect(met.code).toBe(0);
    expect(JSON.parse(met.stdout).report.search).toMatchObject({ met: true, floatNodes: [], path: [expect.objectContaining({ step: 'method minmax', met: true })] });
    // --queue without a search has nothing to share.
    const plain = qforge(['quantize', EXAMPLE, '--data', 'mnist:calib', '--queue', redis.url, '--json']);
    expect(plain.code).toBe(2);
    expect(plain.json().error.code).toBe('E_INVALID_OPTION');
  }, 240000);

  it('a worker killed with SIGKILL mid-trial leaves every row present exactly once', async () => {
    const runs = mkdtempSync(join(tmpdir(), 'qforge-killed-'));
    const before = w1.log().length;
    const before2 = w2.log().length;
    const sweep = qforgeAsync([...grid('40'), '--runs-dir', runs, '--queue', redis.url]);
    await until('w1 to take a trial', () => /attempt 1/.test(w1.log().slice(before)));
    w1.child.kill('SIGKILL');
    const r = await sweep;
    expect(r.code).toBe(0);
    const rows: Row[] = JSON.parse(r.stdout).rows;
    expect(rows.map((x) => `${x.samples}/${x.method}`)).toEqual(['8/minmax', '8/mse', '16/minmax', '16/mse']);
    expect(rows.map((x) => x.error ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(rows.every((x) => !x.error && existsSync(join(x.runDir, 'report.json')))).toBe(true);
    // The lost trial went to w2; no trial has two folders, and no half-written folder is visible.
    const dirs = readdirSync(runs).filter((n) => !n.startsWith('.'));
    expect(dirs.sort()).toEqual(rows.map((x) => x.runDir.split('/').pop()!).sort());
    const jobs = dirs.map((d) => JSON.parse(readFileSync(join(runs, d, 'report.json'), 'utf8')).options.queue.job);
    expect(new Set(jobs).size).toBe(4);
    expect(w2.log().slice(before2)).toMatch(/attempt 2/);
  }, 240000);

  it('SIGTERM hands the trial in progress back and the worker exits 0; the dashboard shows it waiting, then finished', async () => {
    const runs = mkdtempSync(join(tmpdir(), 'qforge-term-'));
    const dash = await startDashboardProcess(['--runs-dir', runs, '--queue', redis.url, '--port', '0', '--allow', runs]);
    try {
      // w2 is the only worker left: it takes the one trial, and SIGTERM hands it back.
      const before = w2.log().length;
      const sweep = qforgeAsync([...grid('30', '8', 'minmax'), '--runs-dir', runs, '--queue', redis.url]);
      let finished = false;
      void sweep.then(() => (finished = true));
      await until('w2 to take the trial', () => finished || /attempt 1/.test(w2.log().slice(before)));
      expect(finished).toBe(false);
      w2.child.kill('SIGTERM');
      expect(await w2.exited).toBe(0);
      expect(w2.log()).toMatch(/released to the queue/);
      // No worker now: the page's API lists the trial as waiting in the queue.
      const waiting = await dash.trials();
      expect(waiting.source).toBe('queue');
      expect(waiting.trials.map((t) => [t.state, t.label])).toEqual([['waiting', 'samples=8 method=minmax per-channel=true']]);
      const w3 = startWorker(redis.url, 't2');
      workers.push(w3);
      const r = await sweep;
      expect(r.code).toBe(0);
      const rows: Row[] = JSON.parse(r.stdout).rows;
      expect(rows).toHaveLength(1);
      expect(rows[0].machine).toMatch(/^t2@/);
      // Finished: completed by t2, linked to its run folder.
      const done = await dash.trials();
      expect(done.trials).toEqual([expect.objectContaining({ state: 'completed', worker: 't2', runId: rows[0].runDir.split('/').pop() })]);
      await stopWorkers([w3]);
    } finally {
      dash.child.kill('SIGTERM');
    }
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
