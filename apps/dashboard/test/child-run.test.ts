// Runs started from the page execute in child processes: a run that crashes fails alone, and closing the server kills runs in progress.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childRunLauncher, startDashboard, type Dashboard, type JobEvent } from '../src/index';

const RUNNER = join(__dirname, 'runners', 'misbehaving.js');
const root = mkdtempSync(join(tmpdir(), 'qforge-child-run-'));
const runsDir = join(root, 'runs');
const models = join(root, 'models');
const pidDir = join(root, 'pids');
for (const d of [runsDir, models, pidDir]) mkdirSync(d);
// The runner reads how to end from the model's name.
const model = (how: string) => {
  const path = join(models, `${how}.onnx`);
  writeFileSync(path, 'x');
  return path;
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function start(d: Dashboard, how: string): Promise<{ jobId: string; state: string; events: string }> {
  const r = await fetch(`${d.url}/api/runs`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-qforge-token': d.token }, body: JSON.stringify({ model: model(how), data: 'random', samples: 1, evalSamples: 1 }) });
  expect(r.status).toBe(202);
  return r.json();
}

/** The job's server-sent events, read until the stream ends (it ends with done or failed). */
async function events(d: Dashboard, path: string): Promise<JobEvent[]> {
  const text = await (await fetch(`${d.url}${path}`)).text();
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => JSON.parse(block.slice(block.indexOf('data: ') + 6)) as JobEvent);
}

async function waitFor(file: string): Promise<number> {
  for (let i = 0; i < 500 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
  return Number(readFileSync(file, 'utf8'));
}

describe('runs in child processes', () => {
  let d: Dashboard;
  beforeAll(async () => {
    d = await startDashboard({ runsDir, allow: [models], launch: childRunLauncher({ module: RUNNER, init: { runsDir, pidDir }, runsDir }) });
  });
  afterAll(() => d?.close());

  it.each([
    ['exits', /its process exited with code 3 before finishing/],
    ['throws-later', /exited with code 1 before finishing; its last output:[\s\S]*kaboom from a callback nobody awaits/],
    ['segfaults', /its process was killed by SIGSEGV/],
  ])('a run that %s fails alone: the job says why, the server keeps answering, no work folder stays', async (how, message) => {
    const job = await start(d, how);
    const seen = await events(d, job.events);
    expect(seen.at(-1)).toEqual({ type: 'failed', error: expect.objectContaining({ code: 'E_RUNTIME_FAILED', message: expect.stringMatching(message) }) });
    expect(seen.some((e) => e.type === 'progress')).toBe(true);
    const list = await fetch(`${d.url}/api/runs`);
    expect(list.status).toBe(200);
    expect(alive(Number(readFileSync(join(pidDir, `${how}.pid`), 'utf8')))).toBe(false);
    expect(readdirSync(runsDir).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });

  it('ordinary outcomes pass through: the run id of a finished run, a coded failure with its failure report', async () => {
    expect((await events(d, (await start(d, 'works')).events)).at(-1)).toEqual({ type: 'done', runId: 'run-of-works' });
    expect((await events(d, (await start(d, 'fails')).events)).at(-1)).toEqual({ type: 'failed', error: expect.objectContaining({ code: 'E_DATASET_EMPTY', runId: 'failed-run-id' }) });
  });
});

describe('closing the dashboard', () => {
  it('kills the run in progress (even one that ignores SIGTERM) and fails the queued one', async () => {
    const d = await startDashboard({ runsDir, allow: [models], launch: childRunLauncher({ module: RUNNER, init: { runsDir, pidDir }, runsDir, killGraceMs: 300 }) });
    const running = await start(d, 'hangs');
    const queued = await start(d, 'works');
    expect(queued.state).toBe('queued');
    const pid = await waitFor(join(pidDir, 'hangs.pid'));
    expect(alive(pid)).toBe(true);
    const streams = [events(d, running.events), events(d, queued.events)];
    await new Promise((r) => setTimeout(r, 50));
    await d.close();
    expect(alive(pid)).toBe(false);
    const [a, b] = await Promise.all(streams);
    expect(a.at(-1)).toEqual({ type: 'failed', error: expect.objectContaining({ code: 'E_ABORTED' }) });
    expect(b.at(-1)).toEqual({ type: 'failed', error: expect.objectContaining({ code: 'E_ABORTED' }) });
    expect(readdirSync(runsDir).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });
});
