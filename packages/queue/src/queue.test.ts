import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errInvalidOption, isQforgeError } from '@qforge/core';
import { checkQueueReachable, listTrials, redactArgs, redactQueueUrl, redisServerAvailable, runTrials, startLocalRedis, startTrialWorker, trialJobId, type LocalRedis, type TrialHandler, type TrialRequest } from './index';

describe('queue URLs and job ids', () => {
  it('never shows a password, and leaves URLs without one as they are', () => {
    expect(redactQueueUrl('redis://:s3cret@db.internal:6380/2')).toBe('redis://:***@db.internal:6380/2');
    expect(redactQueueUrl('rediss://alice:s3cret@db:6379')).toBe('rediss://alice:***@db:6379');
    expect(redactQueueUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactArgs(['sweep', 'm.onnx', '--queue', 'redis://:s3cret@h:1']).join(' ')).not.toContain('s3cret');
  });

  it('gives the same trial the same id whatever the key order, and another trial another id', () => {
    const a = trialJobId('sweep', 'ab'.repeat(32), { samples: 8, method: 'mse', data: 'mnist:calib' });
    expect(trialJobId('sweep', 'ab'.repeat(32), { data: 'mnist:calib', method: 'mse', samples: 8, unset: undefined })).toBe(a);
    expect(trialJobId('sweep', 'ab'.repeat(32), { samples: 8, method: 'entropy', data: 'mnist:calib' })).not.toBe(a);
    expect(trialJobId('sweep', 'cd'.repeat(32), { samples: 8, method: 'mse', data: 'mnist:calib' })).not.toBe(a);
    expect(trialJobId('sweep', 'ab'.repeat(32), { samples: 8, method: 'mse', data: 'mnist:test' })).not.toBe(a);
  });
});

describe('a queue that cannot be reached', () => {
  it('fails quickly with E_QUEUE_UNAVAILABLE and the URL without its password', async () => {
    const t0 = Date.now();
    const e = await checkQueueReachable('redis://:s3cret@127.0.0.1:1').catch((x) => x);
    expect(isQforgeError(e) && e.code).toBe('E_QUEUE_UNAVAILABLE');
    expect(e.message).toContain('127.0.0.1:1');
    expect(JSON.stringify(e.toJSON())).not.toContain('s3cret');
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('rejects what is not a redis URL as an option error, not as an unreachable queue', async () => {
    const e = await checkQueueReachable('http://127.0.0.1:6379').catch((x) => x);
    expect(e.code).toBe('E_INVALID_OPTION');
  });
});

const haveRedis = redisServerAvailable();
const withRedis = haveRedis ? describe : describe.skip;
if (!haveRedis) console.warn('queue tests against Redis skipped: redis-server is not installed (apt-get install redis-server)');

withRedis('trials through a real redis-server', () => {
  let redis: LocalRedis;
  const dir = mkdtempSync(join(tmpdir(), 'qforge-queue-'));
  const model = join(dir, 'model.bin');
  writeFileSync(model, 'model bytes v1');
  beforeAll(async () => {
    redis = await startLocalRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  const request = (n: number, extra: Record<string, unknown> = {}): TrialRequest => ({ kind: 'square', model, runsDir: dir, label: `n=${n}`, spec: { n, ...extra } });

  it('two workers run every trial once, results in request order, each naming its machine', async () => {
    const seen: string[] = [];
    const square: TrialHandler = async (job, ctx) => {
      seen.push(`${ctx.machine.worker}:${(job.spec as { n: number }).n}`);
      ctx.progress({ phase: 'verify', current: 1, total: 1 });
      await new Promise((r) => setTimeout(r, 30));
      return (job.spec as { n: number }).n ** 2;
    };
    const workers = await Promise.all(['w1', 'w2'].map((name) => startTrialWorker({ url: redis.url, name, handlers: { square } })));
    try {
      const reqs = [1, 2, 3, 4, 5, 6].map((n) => request(n, { run: 'a' }));
      const out = await runTrials<number>(redis.url, reqs);
      expect(out.map((o) => (o.state === 'completed' ? o.value.result : o.reason))).toEqual([1, 4, 9, 16, 25, 36]);
      expect(seen).toHaveLength(6);
      expect(new Set(out.map((o) => (o.state === 'completed' ? o.value.machine.worker : '')))).toEqual(new Set(seen.map((s) => s.split(':')[0])));
      for (const o of out) if (o.state === 'completed') expect(o.value.machine.threads).toBeGreaterThan(0);
      // A rerun finds the finished trials under the same ids: nothing runs twice, no row doubles.
      const again = await runTrials<number>(redis.url, reqs);
      expect(again.map((o) => o.id)).toEqual(out.map((o) => o.id));
      expect(seen).toHaveLength(6);
    } finally {
      await Promise.all(workers.map((w) => w.release()));
    }
  });

  it('a trial whose model file changed after it was queued is refused with a coded failure, not run', async () => {
    const other = join(dir, 'other.bin');
    writeFileSync(other, 'original');
    let ran = 0;
    const square: TrialHandler = async () => ++ran;
    // Queued while no worker listens (the hash is taken now), then the file is replaced.
    const pending = runTrials(redis.url, [{ kind: 'square', model: other, runsDir: dir, label: 'changed', spec: { n: 99 } }]);
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(other, 'replaced');
    const w = await startTrialWorker({ url: redis.url, name: 'w-sha', handlers: { square } });
    try {
      const [o] = await pending;
      expect(o.state).toBe('failed');
      if (o.state === 'failed') {
        expect(o.code).toBe('E_INVALID_OPTION');
        expect(o.reason).toMatch(/SHA-256/);
      }
      expect(ran).toBe(0);
      // The twin: the same file, queued as it is now, runs.
      const [ok] = await runTrials(redis.url, [{ kind: 'square', model: other, runsDir: dir, label: 'same', spec: { n: 100 } }]);
      expect(ok.state).toBe('completed');
      expect(ran).toBe(1);
    } finally {
      await w.release();
    }
  });

  it('a released worker hands its trial back; another worker finishes it, once', async () => {
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    const slow: TrialHandler = async (_job, ctx) => {
      started();
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, 20000);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          reject(new Error('aborted'));
        });
      });
      return 'slow';
    };
    const quick: TrialHandler = async () => 'quick';
    const first = await startTrialWorker({ url: redis.url, name: 'leaving', handlers: { square: slow } });
    const pending = runTrials<string>(redis.url, [request(7, { run: 'release' })]);
    await startedP;
    const t0 = Date.now();
    await first.release();
    expect(Date.now() - t0).toBeLessThan(5000);
    const second = await startTrialWorker({ url: redis.url, name: 'staying', handlers: { square: quick } });
    try {
      const [o] = await pending;
      expect(o.state).toBe('completed');
      if (o.state === 'completed') {
        expect(o.value.result).toBe('quick');
        expect(o.value.machine.worker).toBe('staying');
      }
    } finally {
      await second.release();
    }
  });

  it('lists waiting, running, completed and failed trials of one runs folder, with worker and progress', async () => {
    const board = mkdtempSync(join(tmpdir(), 'qforge-board-'));
    const req = (n: number): TrialRequest => ({ kind: 'square', model, runsDir: board, label: `board n=${n}`, spec: { n, board } });
    let unblock!: () => void;
    const blocked = new Promise<void>((r) => (unblock = r));
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    const handler: TrialHandler = async (job, ctx) => {
      const n = (job.spec as { n: number }).n;
      if (n === 2) throw errInvalidOption('model', 'refused for the test');
      if (n === 3) {
        ctx.progress({ phase: 'verify', current: 2, total: 5 });
        started();
        await blocked;
      }
      return { runDir: join(board, `run-${n}`) };
    };
    // Queued with no worker listening: all waiting.
    const pending = runTrials(redis.url, [req(1), req(2), req(3), req(4)], { attempts: 1 });
    const waitFor = async (check: (l: Awaited<ReturnType<typeof listTrials>>) => boolean) => {
      for (let i = 0; i < 100; i++) {
        const l = await listTrials(redis.url, { runsDir: board });
        if (check(l)) return l;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('the listing never reached the expected state');
    };
    const queued = await waitFor((l) => l.trials.length === 4);
    expect(queued.trials.map((t) => t.state)).toEqual(['waiting', 'waiting', 'waiting', 'waiting']);
    expect(queued.trials.map((t) => t.label)).toEqual(['board n=1', 'board n=2', 'board n=3', 'board n=4']);
    const w = await startTrialWorker({ url: redis.url, name: 'board-w', handlers: { square: handler } });
    try {
      await startedP;
      const mid = await waitFor((l) => l.counts.running === 1 && l.trials.some((t) => t.progress?.phase === 'verify'));
      expect(mid.counts).toEqual({ waiting: 1, running: 1, completed: 1, failed: 1 });
      expect(mid.workers).toBeGreaterThanOrEqual(1);
      const by = Object.fromEntries(mid.trials.map((t) => [t.label, t]));
      expect(by['board n=1']).toMatchObject({ state: 'completed', worker: 'board-w', runDir: join(board, 'run-1') });
      expect(by['board n=2'].state).toBe('failed');
      expect(by['board n=2'].failedReason).toMatch(/^E_INVALID_OPTION: /);
      expect(by['board n=3']).toMatchObject({ state: 'running', worker: 'board-w', progress: { phase: 'verify', current: 2, total: 5 } });
      expect(by['board n=4'].state).toBe('waiting');
      // Trials of another runs folder are not this folder's.
      expect((await listTrials(redis.url, { runsDir: dir })).trials.every((t) => t.runsDir === dir)).toBe(true);
      unblock();
      await pending;
      const done = await listTrials(redis.url, { runsDir: board });
      expect(done.counts).toEqual({ waiting: 0, running: 0, completed: 3, failed: 1 });
    } finally {
      unblock();
      await w.release();
    }
  });

  it('a trial that keeps failing is marked failed with its cause after bounded attempts', async () => {
    let tries = 0;
    const flaky: TrialHandler = async () => {
      tries++;
      throw new Error('disk on fire');
    };
    const w = await startTrialWorker({ url: redis.url, name: 'flaky', handlers: { square: flaky } });
    try {
      const [o] = await runTrials(redis.url, [request(8, { run: 'flaky' })], { attempts: 2 });
      expect(o.state).toBe('failed');
      if (o.state === 'failed') expect(o.reason).toContain('disk on fire');
      expect(tries).toBe(2);
    } finally {
      await w.release();
    }
  });
});
