#!/usr/bin/env node
// The TensorFlow.js → TFLite part of docs/benchmarks.md: each model converted with default options
// (`--target tflite-int8`: minmax, per-channel, bias correction), run in the real TFLite
// interpreter (WebAssembly) against the fp32 .tflite of the same graph in that interpreter, plus
// the weight-only TensorFlow.js artifact. Rewrites the section between the tflite markers.
// Usage: npm run build && node tools/bench-tflite.js
const { execFileSync } = require('node:child_process');
const { existsSync, mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const core = require('@qforge/core');
const { TfjsBackend } = require('@qforge/backend-tfjs');

const ROOT = resolve(__dirname, '..');
const OUT = join(ROOT, 'out', 'bench-tflite');
const PHOTOS = join(ROOT, 'out', 'data', 'photos');
const NSFWJS = join(ROOT, 'out', 'models', 'nsfwjs-mobilenet_v2', 'model.json');
const START = '<!-- tflite:start -->';
const END = '<!-- tflite:end -->';

const MODELS = [
  { id: 'mnist-cnn', title: 'MNIST CNN (embedded example)', path: join(ROOT, 'examples', 'mnist', 'tfjs', 'model.json'), calib: 'mnist:calib', eval: 'mnist:test', samples: 256, evalSamples: 1000 },
  { id: 'mnist-deep', title: 'MNIST deep fixture (BN, depthwise, residual, concat, GAP)', path: join(ROOT, 'examples', 'mnist-deep', 'tfjs', 'model.json'), calib: 'mnist:calib', eval: 'mnist:test', samples: 256, evalSamples: 1000 },
  { id: 'nsfwjs-mobilenet_v2', title: 'nsfwjs MobileNetV2 (npm `nsfwjs` 4.4.0, 224×224)', path: NSFWJS, calib: join(PHOTOS, 'calib'), eval: join(PHOTOS, 'eval'), samples: 72, evalSamples: 72 },
];

const ctx = core.createRunContext();
const backend = new TfjsBackend();
const target = core.resolveTargetProfile('tflite-int8');
const f1 = (x) => (x === undefined ? '—' : x.toFixed(1));
const f2 = (x) => (x === undefined ? '—' : x.toFixed(2));
const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;

async function benchModel(m) {
  const model = core.modelRef(m.path);
  const info = await backend.inspect(model);
  const fp32WeightBytes = info.parameterCount * 4;
  const runsDir = join(OUT, 'runs');
  const r = await core.runQuantize(backend, { model, runsDir, target, data: m.calib, samples: m.samples, evalData: m.eval, evalSamples: m.evalSamples, benchmarkRuns: 200, thresholds: { minSnrDb: 20, maxAccuracyDropPoints: 0.5 } }, ctx);
  const w = await core.runQuantize(backend, { model, runsDir, target, mode: 'weight-only', evalData: m.eval, evalSamples: m.evalSamples, benchmark: false, thresholds: {} }, ctx);
  const rep = r.report;
  const o = rep.verify.outputs[0];
  return {
    id: m.id,
    title: m.title,
    fp32Bytes: rep.input.sizeBytes,
    fp32WeightBytes,
    tfliteBytes: rep.sizes.outputBytes,
    weightOnlyBytes: w.report.sizes.outputBytes,
    weightOnlySnr: w.report.verify.outputs[0].snrDb,
    weightOnlyAccuracy: w.report.verify.accuracy,
    snrDb: o.snrDb,
    preActivation: o.preActivation,
    top1: o.top1Agreement,
    accuracy: rep.verify.accuracy,
    worstLayer: rep.verify.layers?.[0],
    fp32Ms: rep.benchmark.compare.latencyMs.mean,
    int8Ms: rep.benchmark.primary.latencyMs.mean,
    speedup: rep.benchmark.speedup,
    calibrationMs: rep.calibration.durationMs,
    calibrationSamples: rep.calibration.sampleCount,
    quantizeMs: rep.quantization.durationMs,
    ops: rep.quantization.quantizedNodes,
    preparation: rep.quantization.preparation.length,
    corrections: rep.corrections ?? [],
    verdict: rep.verdict,
    runtime: rep.benchmark.runtime,
    crossRuntime: rep.benchmark.crossRuntime,
  };
}

function section(results) {
  const L = [START, '', '## TensorFlow.js → full-integer int8 TFLite', ''];
  L.push('Measured by `node tools/bench-tflite.js` (part of `npm run bench`) with default options (`--target tflite-int8`: minmax, int8 per-channel weights, bias correction). The `.tflite` runs in the real TFLite interpreter (`@tensorflow/tfjs-tflite`, WebAssembly SIMD, one thread); fp32 is the fp32 `.tflite` of the same graph that `quantize` writes beside the int8 one, in the same interpreter, measured alternately in one process on the same input.');
  L.push(`Runtime: ${results[0]?.runtime ?? '—'}.`, '');
  L.push('| model | fp32 weights → .tflite | ratio | fp32 → int8 .tflite, same interpreter (ms) | speedup | output SNR | pre-activation SNR | top-1 agree | accuracy fp32 → int8 | worst layer | verdict |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    L.push(
      `| ${r.title} | ${kib(r.fp32WeightBytes)} → ${kib(r.tfliteBytes)} | ${f2(r.tfliteBytes / r.fp32WeightBytes)}× | ${f2(r.fp32Ms)} → ${f2(r.int8Ms)} | ${f2(r.speedup)}×${r.crossRuntime ? ' (cross-runtime: fp32 in TensorFlow.js)' : ''} | ${f1(r.snrDb)} dB | ${r.preActivation ? `${f1(r.preActivation.snrDb)} dB (before ${r.preActivation.op})` : '—'} | ${r.top1 !== undefined ? `${f1(r.top1 * 100)}%` : '—'} | ${r.accuracy ? `${f2(r.accuracy.reference * 100)}% → ${f2(r.accuracy.candidate * 100)}%` : '—'} | ${r.worstLayer ? `${r.worstLayer.tensor} ${f1(r.worstLayer.snrDb)} dB` : '—'} | ${r.verdict} |`,
    );
  }
  L.push('', '| model | model on disk (model.json + shards) | ops written | graph changes | calibration (samples) | conversion (incl. bias correction) | bias correction: SNR without → with |');
  L.push('|---|---|---|---|---|---|---|');
  for (const r of results) {
    const bc = r.corrections.find((c) => c.name === 'bias-correction' && c.metric.startsWith('SNR'));
    L.push(`| ${r.title} | ${kib(r.fp32Bytes)} | ${r.ops} | ${r.preparation} | ${f1(r.calibrationMs)} ms (${r.calibrationSamples}) | ${f1(r.quantizeMs)} ms | ${bc ? `${f2(bc.without)} → ${f2(bc.with)} dB` : '—'} |`);
  }
  L.push('', '### Weight-only TensorFlow.js artifact (`--mode weight-only`)', '');
  L.push('| model | fp32 weights → int8-weight model.json + shard | ratio | output SNR | accuracy fp32 → compressed |');
  L.push('|---|---|---|---|---|');
  for (const r of results) L.push(`| ${r.title} | ${kib(r.fp32WeightBytes)} → ${kib(r.weightOnlyBytes)} | ${f2(r.weightOnlyBytes / r.fp32WeightBytes)}× | ${f1(r.weightOnlySnr)} dB | ${r.weightOnlyAccuracy ? `${f2(r.weightOnlyAccuracy.reference * 100)}% → ${f2(r.weightOnlyAccuracy.candidate * 100)}%` : '—'} |`);
  L.push('', 'Notes:');
  L.push('- fp32 weights = parameter count × 4 bytes. nsfwjs ships its weights already 8-bit (tfjs `uint8` per-tensor), so its download is smaller than fp32; the fp32 reference is that model as TensorFlow.js runs it (weights dequantized on load).');
  L.push('- Bias correction is measured on the pre-Softmax SNR, against the same conversion without it.');
  L.push('- Weight-only ratios include model.json, where the per-channel scales are stored as JSON numbers (the 1024-unit dense layer of the deep fixture alone adds about 20 KiB of text).');
  L.push('- nsfwjs inputs: 224×224 crops of the six demo photos in `@vladmandic/face-api` (`tools/make-photo-fixture.js`): calibration from photos 1–3, evaluation from photos 4–6.');
  L.push('- The speedup is int8 against fp32 inside one runtime (the TFLite interpreter). A ratio against the TensorFlow.js model (`qforge benchmark x.tflite --compare model.json`) mixes a change of runtime with quantization and is labeled cross-runtime.');
  L.push('', END);
  return L.join('\n');
}

/** Replaces the marked section of docs/benchmarks.md (or appends it). */
function writeSection(md) {
  const path = join(ROOT, 'docs', 'benchmarks.md');
  const old = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const a = old.indexOf(START);
  const b = old.indexOf(END);
  const next = a >= 0 && b > a ? old.slice(0, a) + md + old.slice(b + END.length) : `${old.trimEnd()}\n\n${md}\n`;
  writeFileSync(path, next);
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  if (!existsSync(NSFWJS) || !existsSync(join(PHOTOS, 'eval'))) execFileSync(process.execPath, [join(__dirname, 'make-photo-fixture.js')], { stdio: 'inherit' });
  const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;
  const results = [];
  for (const m of MODELS) {
    if (only && !only.has(m.id)) continue;
    process.stderr.write(`bench-tflite ${m.id}…\n`);
    results.push(await benchModel(m));
  }
  writeFileSync(join(OUT, 'results.json'), JSON.stringify(results, null, 1));
  const md = section(results);
  writeSection(md);
  process.stdout.write(md + '\n');
}

module.exports = { START, END };

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
