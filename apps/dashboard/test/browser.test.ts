// The dashboard in a real headless Chromium (Debian's package, driven by playwright-core).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Trial, analyzeSensitivity, createRunContext, modelRef, openDataset, quantizeOptionsFor, recordSensitivityRun, resolveTargetProfile, runQuantize, type RunContext } from '@qforge/core';
import { OnnxRuntimeBackend } from '@qforge/backend-onnxruntime';
import { startDashboard, writeReportHtml, type Dashboard, type StartRunRequest } from '../src/index';
import { fakeReport } from './fixtures';

const ROOT = join(__dirname, '..', '..', '..');
const EXAMPLES = join(ROOT, 'examples');
const MODEL = join(EXAMPLES, 'mnist', 'mnist-cnn.onnx');
const SHOTS = join(ROOT, 'out', 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);
// CI installs chromium (.ci/run); elsewhere these tests are skipped and say so.
const maybe = haveBrowser || process.env.CI ? describe : describe.skip;
if (!haveBrowser && !process.env.CI) console.warn(`dashboard browser tests skipped: no ${CHROMIUM} (apt-get install chromium)`);

const backend = new OnnxRuntimeBackend();
const runsDir = mkdtempSync(join(tmpdir(), 'qforge-dash-runs-'));

async function quantizeRun(samples: number, method: 'minmax' | 'percentile', ctx: RunContext = createRunContext()) {
  const r = await runQuantize(backend, { model: modelRef(MODEL), runsDir, target: resolveTargetProfile('auto'), data: 'mnist:calib', samples, method, evalData: 'mnist:test', evalSamples: 200, benchmarkRuns: 30, latencySearch: false }, ctx);
  await writeReportHtml(r.runDir, r.report);
  return r;
}

maybe('dashboard in Chromium', () => {
  let dash: Dashboard;
  let browser: Browser;
  let page: Page;
  let firstRun: string;
  let sensitivityRun: string;
  const launched: StartRunRequest[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    firstRun = (await quantizeRun(8, 'minmax')).report.runId;
    await quantizeRun(32, 'percentile');
    // A `qforge sensitivity` run: the run page charts its per-node ranking.
    const target = resolveTargetProfile('auto');
    const inputs = await backend.modelInputs(modelRef(MODEL));
    const table = await backend.calibrate(modelRef(MODEL), openDataset('mnist:calib', { inputs }), { method: 'minmax', samples: 16, target }, createRunContext());
    const trial = new Trial(backend, modelRef(MODEL), quantizeOptionsFor(target, { output: '' }), { dataset: openDataset('mnist:test', { inputs }), samples: 50, metric: 'snr' }, createRunContext());
    const sens = await analyzeSensitivity(trial, table, 'snr', createRunContext(), false);
    trial.dispose();
    sensitivityRun = (await recordSensitivityRun(backend, { model: modelRef(MODEL), runsDir, target, data: 'mnist:calib', evalData: 'mnist:test', samples: 16, evalSamples: 50, startedAt: Date.now() }, sens)).report.runId;
    // A damaged run (corrupt report) and a half-written one (no report yet) must not break the list.
    mkdirSync(join(runsDir, '20260101T000000Z-broken-onnxruntime-dead'));
    writeFileSync(join(runsDir, '20260101T000000Z-broken-onnxruntime-dead', 'report.json'), '{ "kind": "qforge.run-rep');
    mkdirSync(join(runsDir, '20260101T000001Z-writing-onnxruntime-beef'));
    const launch = async (req: StartRunRequest, ctx: RunContext) => {
      launched.push(req);
      const r = await runQuantize(backend, { model: modelRef(req.model), runsDir, target: resolveTargetProfile(req.target), data: req.data, samples: req.samples, method: req.method === 'auto' ? undefined : req.method, evalData: req.evalData, evalSamples: req.evalSamples, benchmarkRuns: 20, inputShapes: req.inputShape ?? [] }, ctx);
      return { runId: r.report.runId };
    };
    dash = await startDashboard({ runsDir, allow: [EXAMPLES], launch, backends: ['auto', 'onnxruntime'] });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  afterAll(async () => {
    await browser?.close();
    await dash?.close();
  });

  it('lists runs, sorts and filters them, and shows damaged runs as damaged', async () => {
    // Opened the way a user does: the printed URL, with the per-launch token (kept for the tab).
    await page.goto(`${dash.openUrl}#/`);
    await page.waitForSelector('body[data-ready="/"] #runs tbody tr');
    const rows = await page.locator('#runs tbody tr').count();
    expect(rows).toBe(5);
    await expect(page.locator('tr.damaged').count()).resolves.toBe(2);
    await expect(page.locator('#runs').textContent()).resolves.toContain('percentile');
    await page.fill('#filter', 'percentile');
    await page.waitForFunction(() => document.querySelectorAll('#runs tbody tr').length === 1);
    await page.fill('#filter', '');
    // Clearing the filter re-renders the list: read the labels once every row is back.
    await page.waitForFunction(() => document.querySelectorAll('#runs tbody tr').length === 5);
    // Runs of one model are told apart by the options that differ (not all named mnist-cnn.onnx).
    const labels = await page.locator('#runs td.run-name a').allTextContents();
    expect(labels.filter((l) => /mnist-cnn\.onnx · .*method=minmax/.test(l))).toHaveLength(1);
    expect(labels.filter((l) => /mnist-cnn\.onnx · .*method=percentile/.test(l))).toHaveLength(1);
    // The list fits the window: nothing scrolls sideways and the verdict column is on screen.
    const fit = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth, verdict: document.querySelector('th[data-key="verdict"]')!.getBoundingClientRect().right }));
    expect(fit.page).toBeLessThanOrEqual(fit.view);
    expect(fit.verdict).toBeLessThanOrEqual(fit.view);
    await page.click('th[data-key="samples"]');
    await page.waitForFunction(() => document.querySelector('th[data-key="samples"]')?.textContent?.includes('▲'));
    await page.screenshot({ path: join(SHOTS, 'runs-list.png'), fullPage: true });
    // Narrower windows too (a laptop split screen).
    await page.setViewportSize({ width: 1024, height: 800 });
    await page.screenshot({ path: join(SHOTS, 'runs-list-1024.png'), fullPage: true });
    expect(await page.evaluate(() => document.querySelector('th[data-key="verdict"]')!.getBoundingClientRect().right <= window.innerWidth)).toBe(true);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('shows a run page with its charts, options and artifacts', async () => {
    await page.goto(`${dash.url}/#/run/${firstRun}`);
    await page.waitForSelector(`body[data-ready="/run/${firstRun}"]`);
    // Chart.js draws on canvas: every chart registered an instance with data.
    const charts = await page.evaluate(() => ['latency', 'layers', 'ranges'].map((id) => {
      const c = (window as unknown as { Chart: { getChart(el: Element | null): { data: { datasets: { data: unknown[] }[] } } | undefined } }).Chart.getChart(document.getElementById(id));
      return c ? c.data.datasets[0].data.length : 0;
    }));
    expect(charts.every((n) => n > 0)).toBe(true);
    // The range chart also shows the weight distribution of a quantized layer.
    await page.selectOption('#tensor', 'weight: conv1.weight');
    const weightBins = await page.evaluate(() => (window as unknown as { Chart: { getChart(el: Element | null): { data: { datasets: { label: string; data: unknown[] }[] } } | undefined } }).Chart.getChart(document.getElementById('ranges'))?.data.datasets[0]);
    expect(weightBins?.label).toBe('weights of conv1.weight');
    expect(weightBins?.data.length).toBe(64);
    await expect(page.locator('#artifacts').textContent()).resolves.toContain('model.int8.onnx');
    await expect(page.locator('#options').textContent()).resolves.toContain('onnxruntime');
    const model = await page.request.get(`${dash.url}/api/runs/${firstRun}/files/model.int8.onnx`);
    expect(model.status()).toBe(200);
    await page.screenshot({ path: join(SHOTS, 'run-page.png'), fullPage: true });
  });

  it('charts a sensitivity run: recovery per node, most sensitive first', async () => {
    await page.goto(`${dash.url}/#/run/${sensitivityRun}`);
    await page.waitForSelector(`body[data-ready="/run/${sensitivityRun}"]`);
    const bars = await page.evaluate(() => (window as unknown as { Chart: { getChart(el: Element | null): { data: { labels: string[]; datasets: { data: number[] }[] } } | undefined } }).Chart.getChart(document.getElementById('sensitivity'))?.data);
    expect(bars?.labels).toHaveLength(4);
    expect(bars!.datasets[0].data[0]).toBeGreaterThanOrEqual(bars!.datasets[0].data[3]);
    await expect(page.locator('#sensitivity-table tbody tr').count()).resolves.toBe(4);
    await page.screenshot({ path: join(SHOTS, 'sensitivity.png'), fullPage: true });
  });

  it('compares two runs side by side and plotted', async () => {
    await page.goto(`${dash.url}/#/`);
    await page.waitForSelector('input.pick');
    const picks = page.locator('input.pick');
    await picks.nth(0).check();
    await page.waitForFunction(() => document.querySelectorAll('input.pick').length === 2);
    await page.locator('input.pick').nth(1).check();
    await page.click('#compare-btn');
    await page.waitForSelector('#compare-table tbody tr');
    await expect(page.locator('#compare-table tbody tr').count()).resolves.toBe(2);
    // One small chart per metric, each with a bar per run; the task metric (MNIST: top-1 accuracy) comes first.
    const charts = await page.evaluate(() =>
      [...document.querySelectorAll('#compare-charts .chart')].map((box) => ({ metric: (box as HTMLElement).dataset.metric, bars: (window as unknown as { Chart: { getChart(el: Element | null): { data: { labels: unknown[] } } | undefined } }).Chart.getChart(box.querySelector('canvas'))?.data.labels.length })),
    );
    expect(charts.length).toBeGreaterThanOrEqual(3);
    expect(charts[0].metric).toMatch(/^task:.*top-1 accuracy/);
    for (const c of charts) expect(c.bars).toBe(2);
    await page.screenshot({ path: join(SHOTS, 'compare.png'), fullPage: true });
  });

  it('starts a run from the page, streams its progress and shows the result', async () => {
    await page.goto(`${dash.openUrl}#/start`);
    await page.waitForSelector('#start-form');
    await page.selectOption('#model', MODEL);
    await page.selectOption('#data', 'mnist:calib');
    await page.selectOption('#evalData', 'mnist:test');
    await page.fill('#samples', '16');
    await page.fill('#evalSamples', '100');
    // The CLI's data options are on the form; only available backends are offered.
    await expect(page.locator('#mode option').allTextContents()).resolves.toEqual(['static', 'dynamic', 'weight-only']);
    await expect(page.locator('#backend option').allTextContents()).resolves.toEqual(['auto', 'onnxruntime']);
    await page.fill('#inputShape', '1,1,28,28');
    await page.selectOption('#resize', 'cover');
    await page.click('#start-form button[type="submit"]');
    await page.waitForFunction(() => /calibrate|verify|benchmark|prepare|quantize|write/.test(document.getElementById('phase')?.textContent ?? ''), undefined, { timeout: 60000 });
    await page.waitForSelector('#new-run', { timeout: 120000 });
    await page.screenshot({ path: join(SHOTS, 'start-run.png'), fullPage: true });
    // The form's defaults: the target's calibration method (the searches may change it), 256-sample cap overridden to 16 above.
    expect(launched.at(-1)).toMatchObject({ inputShape: ['1,1,28,28'], resize: 'cover', method: 'auto', samples: 16 });
    expect(launched.at(-1)).not.toHaveProperty('imageSize');
    await page.click('#new-run');
    await page.waitForSelector('#latency');
    await page.goto(`${dash.url}/#/`);
    await page.waitForSelector('body[data-ready="/"] #runs tbody tr');
    await expect(page.locator('#runs tbody tr').count()).resolves.toBe(6);
  });

  it('refuses paths outside the allowed folders and invalid requests', async () => {
    const post = (data: unknown) => page.request.post(`${dash.url}/api/runs`, { data, headers: { 'content-type': 'application/json', 'x-qforge-token': dash.token } });
    const outside = await post({ model: '/etc/passwd', data: 'mnist:calib' });
    expect(outside.status()).toBe(403);
    expect((await outside.json()).error.code).toBe('FORBIDDEN_PATH');
    expect((await post({ model: MODEL, data: join(ROOT, 'package.json') })).status()).toBe(403);
    expect((await post({ model: MODEL, data: 'mnist:calib', samples: -3 })).status()).toBe(400);
    expect((await post({ model: MODEL, data: 'mnist:calib', extra: true })).status()).toBe(400);
    expect((await post({ model: MODEL, data: 'mnist:calib', imageSize: 'big' })).status()).toBe(400);
    expect((await post({ model: MODEL, data: 'mnist:calib', inputShape: ['1,1,28,28; rm -rf /'] })).status()).toBe(400);
    expect((await page.request.get(`${dash.url}/api/runs/..%2F..%2Fetc%2Fpasswd`)).status()).toBe(404);
    expect((await page.request.get(`${dash.url}/api/runs/${firstRun}/files/..%2F..%2Fpackage.json`)).status()).toBe(404);
    // A failed run started from the page reports its coded error.
    await page.goto(`${dash.openUrl}#/start`);
    await page.waitForSelector('#start-form');
    await page.selectOption('#model', MODEL);
    await page.selectOption('#data', 'random');
    await page.selectOption('#mode', 'static');
    await page.fill('#samples', '2');
    await page.evaluate(() => {
      const o = document.createElement('option');
      o.value = o.textContent = 'mnist:9-3';
      document.getElementById('data')!.appendChild(o);
    });
    await page.selectOption('#data', 'mnist:9-3');
    await page.click('#start-form button[type="submit"]');
    await expect(page.locator('#job-result .error').textContent({ timeout: 30000 })).resolves.toMatch(/E_INVALID_OPTION|FORBIDDEN/);
  });

  it('a page opened without the token cannot start runs', async () => {
    const p = await browser.newPage();
    await p.goto(`${dash.url}/#/start`);
    await p.waitForSelector('#start-form');
    await p.selectOption('#model', MODEL);
    await p.click('#start-form button[type="submit"]');
    await expect(p.locator('#job-result .error').textContent({ timeout: 30000 })).resolves.toMatch(/token/);
    await p.close();
  });

  it('report.html opens offline and draws its charts', async () => {
    const offline = await browser.newContext({ offline: true });
    const p = await offline.newPage();
    await p.goto(`file://${join(runsDir, firstRun, 'report.html')}`);
    await p.waitForSelector('body[data-ready="report"]');
    const drawn = await p.evaluate(() => (window as unknown as { qforgeCharts: ({ data: { datasets: unknown[] } } | null)[] }).qforgeCharts.filter((c) => c && c.data.datasets.length > 0).length);
    expect(drawn).toBeGreaterThanOrEqual(2);
    await expect(p.title()).resolves.toMatch(/^mnist-cnn\.onnx · pass · qforge run /);
    await p.screenshot({ path: join(SHOTS, 'report-html.png'), fullPage: true });
    // A run whose benchmark was skipped (--no-benchmark) shows no empty latency box.
    const report = JSON.parse(readFileSync(join(runsDir, firstRun, 'report.json'), 'utf8'));
    delete report.benchmark;
    const skipped = mkdtempSync(join(tmpdir(), 'qforge-nobench-'));
    await writeReportHtml(skipped, report);
    await p.goto(`file://${join(skipped, 'report.html')}`);
    await p.waitForSelector('body[data-ready="report"]');
    expect(await p.locator('#latency').count()).toBe(0);
    expect(await p.locator('#layers').count()).toBe(1);
    await offline.close();
  });
});

maybe('dashboard in Chromium: stored XSS', () => {
  const xssRuns = mkdtempSync(join(tmpdir(), 'qforge-dash-xss-'));
  const payload = '<img src=x onerror="window.__xss=(window.__xss||0)+1">';
  let dash: Dashboard;
  let browser: Browser;
  beforeAll(async () => {
    // Report fields the schema leaves open, each carrying markup: they must render as text.
    const id = '20260101T000000Z-xss-onnxruntime-abcd';
    mkdirSync(join(xssRuns, id));
    writeFileSync(join(xssRuns, id, 'report.json'), fakeReport(id, {
      calibration: { method: payload, sampleCount: payload, tensorCount: 1, durationMs: 1, reused: false },
      target: { id: payload },
      search: { target: payload, met: false, path: [{ step: payload, method: payload, samples: payload, floatNodes: [payload], score: 1, met: false }] },
      verdictReasons: [payload],
    }));
    // A failed run with a long error: the list cuts it to one line.
    const failed = '20260101T000001Z-long-onnxruntime-ef01';
    mkdirSync(join(xssRuns, failed));
    writeFileSync(join(xssRuns, failed, 'report.json'), fakeReport(failed, { status: 'failed', verdict: 'error', error: { code: 'E_RUNTIME_FAILED', message: `session creation failed: ${'a very long runtime message '.repeat(40)}` } }));
    dash = await startDashboard({ runsDir: xssRuns });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  });
  afterAll(async () => {
    await browser?.close();
    await dash?.close();
  });

  it('shows markup from a report as text on the list and the run page; no script runs', async () => {
    const page = await browser.newPage();
    const violations: string[] = [];
    page.on('console', (m) => violations.push(m.text()));
    await page.goto(`${dash.openUrl}#/`);
    await page.waitForSelector('body[data-ready="/"] #runs tbody tr');
    // The negative twin: the payload is there, as text.
    await expect(page.locator('#runs tbody').textContent()).resolves.toContain(payload);
    // No element was made from it (the CSP would also stop the handler: both defences are checked).
    expect(await page.locator('#view img').count()).toBe(0);
    await page.goto(`${dash.openUrl}#/run/20260101T000000Z-xss-onnxruntime-abcd`);
    await page.waitForSelector('body[data-ready^="/run/"]');
    await expect(page.locator('#search').textContent()).resolves.toContain(payload);
    await page.waitForTimeout(200);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('#view img').count()).toBe(0);
    expect(violations.some((v) => /Content Security Policy/.test(v))).toBe(false);
    await page.close();
  });

  it('cuts a long error to one line and still fits the window', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${dash.openUrl}#/`);
    await page.waitForSelector('body[data-ready="/"] #runs tbody tr');
    const cut = await page.evaluate(() => {
      const el = document.querySelector('#runs td.verdict-error .trunc') as HTMLElement;
      return { shown: el.clientWidth, full: el.scrollWidth, title: el.title.length, page: document.documentElement.scrollWidth, view: window.innerWidth, verdict: document.querySelector('th[data-key="verdict"]')!.getBoundingClientRect().right };
    });
    expect(cut.verdict).toBeLessThanOrEqual(cut.view);
    expect(cut.full).toBeGreaterThan(cut.shown);
    expect(cut.title).toBeGreaterThan(1000);
    expect(cut.page).toBeLessThanOrEqual(cut.view);
    await page.screenshot({ path: join(SHOTS, 'runs-list-long-error.png'), fullPage: true });
    await page.close();
  });
});