// The queued-trials view: what the runs folder shows of a queued sweep, what a queue source shows,
// an unreachable queue without its password, the Host check, and the page in Chromium.
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { RunStore, queueTrialSource, startDashboard, type Dashboard, type QueueListing, type QueuedTrialState } from '../src/index';
import { fakeReport } from './fixtures';

function get(d: Dashboard, path: string, host = new URL(d.url).host): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const url = new URL(d.url);
  return new Promise((done, fail) => {
    const req = request({ host: url.hostname, port: url.port, path, headers: { host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', fail);
    req.end();
  });
}

function runFolder(runsDir: string, id: string, extra: Record<string, unknown>): void {
  mkdirSync(join(runsDir, id));
  writeFileSync(join(runsDir, id, 'report.json'), fakeReport(id, extra));
}

const SHOTS = join(__dirname, '..', '..', '..', 'out', 'screenshots');
const JOB = 't-0123456789abcdef0123456789abcdef01234567';
const payload = '<img src=x onerror="window.__xss=(window.__xss||0)+1">';

describe('queued trials from the runs folder', () => {
  const runsDir = mkdtempSync(join(tmpdir(), 'qforge-dash-trials-'));
  // Two published trials of a queued sweep (one failed), an ordinary run, and one trial still being built on host "box".
  runFolder(runsDir, '20260101T000000Z-m-onnxruntime-aaaa-q0123456789ab', { command: 'sweep samples=8 method=mse per-channel=true', durationMs: 1500, options: { mode: 'static', queue: { job: JOB, worker: 'w1', host: 'box' } } });
  runFolder(runsDir, '20260101T000001Z-m-onnxruntime-bbbb-q1111111111ab', { command: 'sweep samples=16 method=mse per-channel=true', status: 'failed', verdict: 'error', error: { code: 'E_RUNTIME_FAILED', message: 'session failed' }, options: { queue: { job: 't-1111111111ab', worker: 'w2' } } });
  runFolder(runsDir, '20260101T000002Z-m-onnxruntime-cccc', { command: 'quantize m.onnx' });
  mkdirSync(join(runsDir, '.qforge-staging-box', '.20260101T000003Z-m-onnxruntime-dddd.4242.partial'), { recursive: true });
  // A link in the staging folder is not a run being built.
  symlinkSync(tmpdir(), join(runsDir, '.qforge-staging-box', '.20260101T000004Z-m-onnxruntime-eeee.4243.partial'));
  let d: Dashboard;
  beforeAll(async () => {
    d = await startDashboard({ runsDir });
  });
  afterAll(async () => {
    await d?.close();
  });

  it('shows the running trial and the finished ones, each finished one linked to its run, and says waiting ones need the queue', async () => {
    const { status, body } = await get(d, '/api/trials');
    expect(status).toBe(200);
    expect(body.source).toBe('runs-folder');
    expect(body.counts).toEqual({ waiting: 0, running: 1, completed: 1, failed: 1 });
    expect(body.trials.map((t: { state: string }) => t.state)).toEqual(['running', 'completed', 'failed']);
    expect(body.trials[0]).toMatchObject({ label: '20260101T000003Z-m-onnxruntime-dddd', worker: 'box (process 4242)' });
    expect(body.trials[1]).toMatchObject({ id: JOB, label: 'sweep samples=8 method=mse per-channel=true', worker: 'w1', runId: '20260101T000000Z-m-onnxruntime-aaaa-q0123456789ab', finishedAt: '2026-01-01T00:00:01.500Z' });
    expect(body.trials[2]).toMatchObject({ worker: 'w2', error: 'E_RUNTIME_FAILED: session failed' });
    expect(body.note).toMatch(/--queue/);
  });

  it('answers only requests addressed to it, like every other route', async () => {
    expect((await get(d, '/api/trials', `evil.example:${new URL(d.url).port}`)).status).toBe(403);
  });
});

describe('queued trials from a queue source', () => {
  const runsDir = mkdtempSync(join(tmpdir(), 'qforge-dash-queue-'));
  const published = '20260101T000000Z-m-onnxruntime-aaaa-q0123456789ab';
  runFolder(runsDir, published, { options: { queue: { job: JOB } } });
  const counts = (trials: QueueListing[]) => Object.fromEntries(['waiting', 'running', 'completed', 'failed'].map((s) => [s, trials.filter((t) => t.state === s).length])) as Record<QueuedTrialState, number>;
  let listing: QueueListing[] = [
    { id: 't-run', label: 'samples=8 method=mse', state: 'running', worker: 'w1', attempts: 1, progress: { phase: 'verify', current: 3, total: 10 }, queuedAt: Date.UTC(2026, 0, 1), startedAt: Date.UTC(2026, 0, 1, 0, 0, 5) },
    { id: 't-wait', label: payload, state: 'waiting', attempts: 0, queuedAt: Date.UTC(2026, 0, 1) },
    { id: JOB, label: 'samples=16 method=mse', state: 'completed', worker: 'w2', attempts: 1, runDir: join(runsDir, published), finishedAt: Date.UTC(2026, 0, 1, 0, 1) },
    // A run folder elsewhere is not linked: the page links only runs this dashboard serves.
    { id: 't-elsewhere', label: 'keep conv2 in float', state: 'completed', worker: 'w2', attempts: 1, runDir: '/elsewhere/run' },
    { id: 't-fail', label: 'samples=64 method=entropy', state: 'failed', worker: 'w1', attempts: 2, failedReason: 'job stalled more than allowable limit' },
  ];
  let reachable = true;
  let d: Dashboard;
  beforeAll(async () => {
    d = await startDashboard({
      runsDir,
      trials: (store: RunStore) =>
        queueTrialSource(store, 'redis://:***@10.0.0.5:6379', async () => {
          if (!reachable) throw Object.assign(new Error('the trial queue at redis://:hunter2@10.0.0.5:6379 does not answer'), { code: 'E_QUEUE_UNAVAILABLE' });
          return { trials: listing, workers: 2, counts: counts(listing) };
        }),
    });
  });
  afterAll(async () => {
    await d?.close();
  });

  it('shows waiting, running and finished trials with worker, progress and a link to the run', async () => {
    const { status, body } = await get(d, '/api/trials');
    expect(status).toBe(200);
    expect(body).toMatchObject({ source: 'queue', queue: 'redis://:***@10.0.0.5:6379', workers: 2, counts: { waiting: 1, running: 1, completed: 2, failed: 1 } });
    const by = Object.fromEntries(body.trials.map((t: { id: string }) => [t.id, t]));
    expect(by['t-run']).toMatchObject({ state: 'running', worker: 'w1', phase: 'verify', current: 3, total: 10, startedAt: '2026-01-01T00:00:05.000Z' });
    expect(by['t-wait']).toMatchObject({ state: 'waiting', label: payload });
    expect(by[JOB].runId).toBe(published);
    expect(by['t-elsewhere'].runId).toBeUndefined();
    expect(by['t-fail']).toMatchObject({ state: 'failed', attempts: 2, error: 'job stalled more than allowable limit' });
  });

  it('an unreachable queue is a 503 with its code, never with the password', async () => {
    reachable = false;
    try {
      const { status, body } = await get(d, '/api/trials');
      expect(status).toBe(503);
      expect(body.error.code).toBe('E_QUEUE_UNAVAILABLE');
      expect(JSON.stringify(body)).not.toContain('hunter2');
    } finally {
      reachable = true;
    }
  });

  const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  const inBrowser = existsSync(CHROMIUM) || process.env.CI ? it : it.skip;
  inBrowser('the page shows the trials as text, links the finished run, and follows a trial from running to completed', async () => {
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
    try {
      const page = await browser.newPage();
      await page.goto(`${d.openUrl}#/trials`);
      await page.waitForSelector('body[data-ready="/trials"] #trials tbody tr');
      await expect(page.locator('#trials-source').textContent()).resolves.toContain('2 worker(s)');
      expect(await page.locator('#trials tr[data-state="running"] td').allTextContents()).toEqual(['running', 'samples=8 method=mse', 'w1', 'verify 3/10', '1', '00:00:05', '']);
      // The label is markup from whoever queued the job: shown as text, nothing made of it.
      await expect(page.locator('#trials tr[data-state="waiting"]').textContent()).resolves.toContain(payload);
      expect(await page.locator('#view img').count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
      // The running trial finishes: the page reads the trials again and shows it completed.
      listing = listing.map((t) => (t.id === 't-run' ? { ...t, state: 'completed', progress: undefined, finishedAt: Date.UTC(2026, 0, 1, 0, 2) } : t));
      await page.waitForSelector('#trials tr[data-id="t-run"][data-state="completed"]', { timeout: 10000 });
      await expect(page.locator('#trial-counts').textContent()).resolves.toContain('completed 3');
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, 'queued-trials.png'), fullPage: true });
      await page.click(`#trials a[href="#/run/${published}"]`);
      await page.waitForSelector('body[data-ready^="/run/"]');
    } finally {
      await browser.close();
    }
  });
});
