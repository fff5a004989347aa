// The dashboard only its user can drive: loopback Host, token and same Origin for changes, a bounded
// run queue, and a runs folder read safely (one bad run folder is a broken row, never a failed list).
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobQueue, startDashboard, type Dashboard, type StartRunRequest } from '../src/index';
import { fakeReport } from './fixtures';

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A raw HTTP request, so Host and Origin are exactly what a hostile page or curl would send. */
function call(d: Dashboard, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  const url = new URL(d.url);
  return new Promise((done, fail) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { host: url.host, ...(body ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', fail);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

const root = mkdtempSync(join(tmpdir(), 'qforge-dash-sec-'));
const runsDir = join(root, 'runs');
const allow = join(root, 'models');
mkdirSync(runsDir);
mkdirSync(allow);
const model = join(allow, 'm.onnx');
writeFileSync(model, 'x');
const secret = join(root, 'secret.json');
writeFileSync(secret, JSON.stringify({ password: 'hunter2' }));

function run(id: string, files: Record<string, string> = {}): string {
  const dir = join(runsDir, id);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

// Good runs and every kind of bad one the audit found.
run('20260101T000000Z-good-onnxruntime-aaaa', { 'report.json': fakeReport('20260101T000000Z-good-onnxruntime-aaaa') });
run('20260101T000001Z-verify-empty-onnxruntime-bbbb', { 'report.json': fakeReport('b', { verify: {} }) });
symlinkSync(secret, join(run('20260101T000002Z-symlink-onnxruntime-cccc'), 'report.json'));
linkSync(secret, join(run('20260101T000003Z-hardlink-onnxruntime-dddd'), 'report.json'));
const huge = join(run('20260101T000004Z-huge-onnxruntime-eeee'), 'report.json');
writeFileSync(huge, '');
truncateSync(huge, 17 * 1024 * 1024);
const haveMkfifo = spawnSync('mkfifo', [join(run('20260101T000005Z-fifo-onnxruntime-ffff'), 'report.json')]).status === 0;
mkdirSync(join(run('20260101T000006Z-dirartifact-onnxruntime-abab', { 'report.json': fakeReport('g') }), 'model.int8.onnx'));

describe('dashboard access control', () => {
  let d: Dashboard;
  const started: StartRunRequest[] = [];
  let release: () => void = () => undefined;
  beforeAll(async () => {
    const launch = (req: StartRunRequest) => {
      started.push(req);
      return new Promise<{ runId: string }>((done) => (release = () => done({ runId: 'x' })));
    };
    d = await startDashboard({ runsDir, allow: [allow], launch, maxQueuedRuns: 1 });
  });
  afterAll(async () => {
    release();
    await d?.close();
  });

  const good = () => ({ 'x-qforge-token': d.token });
  const body = () => ({ model, data: 'random', samples: 1, evalSamples: 1 });

  it('answers its own loopback Host, with a strict CSP', async () => {
    const r = await call(d, 'GET', '/api/runs');
    expect(r.status).toBe(200);
    expect(r.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(r.headers['content-security-policy']).not.toMatch(/unsafe-inline/);
    expect((await call(d, 'GET', '/api/choices', { host: `localhost:${new URL(d.url).port}` })).status).toBe(200);
  });

  it.each([['evil.example'], ['evil.example:80'], ['127.0.0.1.evil.example'], [`127.0.0.1:1`]])('refuses Host %s (DNS rebinding) with 403', async (host) => {
    for (const path of ['/api/runs', '/api/choices', '/']) expect((await call(d, 'GET', path, { host })).status).toBe(403);
    expect((await call(d, 'POST', '/api/runs', { host, origin: `http://${host}`, ...good() }, body())).status).toBe(403);
    expect(started).toEqual([]);
  });

  it('starting a run needs the token, and a browser Origin must be this server', async () => {
    expect((await call(d, 'POST', '/api/runs', {}, body())).status).toBe(403);
    expect((await call(d, 'POST', '/api/runs', { 'x-qforge-token': 'guess' }, body())).status).toBe(403);
    expect((await call(d, 'POST', '/api/runs', { origin: 'http://evil.example', ...good() }, body())).status).toBe(403);
    expect(started).toEqual([]);
    // curl with the token (no Origin), and the page itself (same Origin): accepted.
    expect((await call(d, 'POST', '/api/runs', good(), body())).status).toBe(202);
    expect((await call(d, 'POST', '/api/runs', { origin: new URL(d.url).origin, ...good() }, body())).status).toBe(202);
    expect(started).toHaveLength(1);
  });

  it('queues runs one at a time and refuses more than the queue holds (429)', async () => {
    const full = await call(d, 'POST', '/api/runs', good(), body());
    expect(full.status).toBe(429);
    expect(JSON.parse(full.body).error.code).toBe('QUEUE_FULL');
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(started).toHaveLength(2);
  });

  it('refuses a non-loopback --host unless exposure is explicit', async () => {
    await expect(startDashboard({ runsDir, host: '0.0.0.0' })).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
    const exposed = await startDashboard({ runsDir, host: '0.0.0.0', unsafeExpose: true });
    await exposed.close();
  });
});

describe('the runs folder is read safely', () => {
  let d: Dashboard;
  beforeAll(async () => {
    d = await startDashboard({ runsDir });
  });
  afterAll(() => d?.close());

  it('lists every run; bad ones are broken rows, nothing outside leaks', async () => {
    const r = await call(d, 'GET', '/api/runs');
    expect(r.status).toBe(200);
    expect(r.body).not.toContain('hunter2');
    const rows = Object.fromEntries((JSON.parse(r.body).runs as { id: string; damaged: boolean; problem?: string }[]).map((x) => [x.id.split('-')[1], x]));
    expect(rows.good).toMatchObject({ damaged: false });
    expect(rows.dirartifact).toMatchObject({ damaged: false });
    for (const bad of ['verify', 'symlink', 'hardlink', 'huge', ...(haveMkfifo ? ['fifo'] : [])]) expect(rows[bad]).toMatchObject({ damaged: true, problem: expect.any(String) });
    expect(rows.symlink.problem).toMatch(/symbolic link/);
    expect(rows.hardlink.problem).toMatch(/hard-linked/);
    expect(rows.huge.problem).toMatch(/limit/);
    if (haveMkfifo) expect(rows.fifo.problem).toMatch(/regular file/);
  });

  it('serves regular artifacts; a symlinked, hard-linked or folder artifact is a 404, never a 500', async () => {
    expect((await call(d, 'GET', '/api/runs/20260101T000000Z-good-onnxruntime-aaaa/files/report.json')).status).toBe(200);
    for (const id of ['20260101T000002Z-symlink-onnxruntime-cccc', '20260101T000003Z-hardlink-onnxruntime-dddd']) {
      const r = await call(d, 'GET', `/api/runs/${id}/files/report.json`);
      expect(r.status).toBe(404);
      expect(r.body).not.toContain('hunter2');
      const page = await call(d, 'GET', `/api/runs/${id}`);
      expect(page.status).toBe(422);
      expect(page.body).not.toContain('hunter2');
    }
    expect((await call(d, 'GET', '/api/runs/20260101T000006Z-dirartifact-onnxruntime-abab/files/model.int8.onnx')).status).toBe(404);
  });
});

describe('JobQueue', () => {
  it('runs one at a time in order, and refuses beyond its bound', async () => {
    const order: string[] = [];
    const gates: (() => void)[] = [];
    const q = new JobQueue(
      (req) =>
        new Promise((done) => {
          order.push(req.model);
          gates.push(() => done({ runId: req.model }));
        }),
      { concurrency: 1, maxQueued: 2 },
    );
    const req = (model: string) => ({ model, data: 'random', backend: 'auto', target: 'auto', mode: 'static' as const, method: 'minmax' as const, samples: 1, evalSamples: 1 });
    const jobs = ['a', 'b', 'c'].map((m) => q.start(req(m))!);
    expect(q.start(req('d'))).toBeUndefined();
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['a']);
    expect(jobs.map((j) => j.state)).toEqual(['running', 'queued', 'queued']);
    expect(q.position(jobs[2].id)).toBe(2);
    gates[0]();
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(['a', 'b']);
    expect(jobs[0].state).toBe('done');
  });

  it('a launcher that throws ends as a failed job and the queue moves on', async () => {
    const q = new JobQueue(() => {
      throw new Error('boom');
    });
    const req = { model: 'm', data: 'random', backend: 'auto', target: 'auto', mode: 'static' as const, method: 'minmax' as const, samples: 1, evalSamples: 1 };
    const a = q.start(req)!;
    const b = q.start(req)!;
    await new Promise((r) => setTimeout(r, 10));
    expect([a.state, b.state]).toEqual(['failed', 'failed']);
  });
});
