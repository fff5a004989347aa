// The fp32 .tflite twin: the same graph as the int8 file in float32, checked against TensorFlow.js
// in the real TFLite interpreter, and what a quantize run's benchmark times the int8 file against.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { createRunContext, openDataset, quantizeOptionsFor, resolveTargetProfile, type Dataset, type ModelRef } from '@qforge/core';
import { readTflite, writeTflite, type TfliteModel } from '@qforge/tflite';
import { TfjsBackend, fp32TwinPath } from './backend';
import { loadTf } from './engine';
import { IrExecutor, type IrConv, type IrGraph, type IrOp } from './ir';
import { openRunner, tfliteEdges, tfliteRunner } from './runner';
import { convertToFloatTflite, convertToTflite } from './tflite-convert';
import { loadTfliteInterpreter } from './tflite-runtime';

const ctx = createRunContext();
const target = resolveTargetProfile('tflite-int8');
const work = mkdtempSync(join(tmpdir(), 'qforge-fp32-'));
const EXAMPLES = join(__dirname, '..', '..', '..', 'examples', 'mnist');
const MNIST = [
  { name: 'MNIST CNN', path: join(EXAMPLES, 'tfjs', 'model.json') },
  { name: 'MNIST MLP 784→512→512→10', path: join(EXAMPLES, 'mnist-mlp-tfjs', 'model.json') },
];
/** Float32 against float32: both runtimes sum in their own order, nothing else may differ. */
const FLOAT_TOLERANCE = 1e-5;

/** Largest |a − b| over the largest |b| of each output, and how many samples' top-1 differ. */
async function compareRunners(reference: ModelRef, candidate: ModelRef, data: Dataset, samples: number): Promise<{ relError: number; top1Differs: number; samples: number }> {
  const ref = await openRunner(reference);
  const cand = await openRunner(candidate);
  let relError = 0;
  let top1Differs = 0;
  let n = 0;
  const argmax = (v: Float32Array) => v.indexOf(Math.max(...v));
  try {
    for await (const s of data.samples({ limit: samples })) {
      const r = ref.predict(s.inputs);
      const c = cand.predict(s.inputs);
      ref.outputNames.forEach((o, k) => {
        const a = c[cand.outputNames[k]];
        const b = r[o];
        expect(a).toHaveLength(b.length);
        let err = 0;
        let mag = 1e-6;
        for (let i = 0; i < b.length; i++) {
          err = Math.max(err, Math.abs(a[i] - b[i]));
          mag = Math.max(mag, Math.abs(b[i]));
        }
        relError = Math.max(relError, Number.isNaN(err) ? Infinity : err / mag);
        if (k === 0 && argmax(a) !== argmax(b)) top1Differs++;
      });
      n++;
    }
  } finally {
    ref.dispose();
    cand.dispose();
  }
  return { relError, top1Differs, samples: n };
}

/** Runs a float .tflite and the IR graph (TensorFlow.js ops) on the same inputs; largest relative error over outputs. */
async function irAgainstTflite(g: IrGraph, bytes: Uint8Array, seeds: number[]): Promise<number> {
  const runner = tfliteRunner(await loadTfliteInterpreter(bytes, { name: 'ir.tflite' }), tfliteEdges(bytes));
  const exec = new IrExecutor(tf, g);
  let worst = 0;
  try {
    for (const seed of seeds) {
      const shape = g.shapes.get(g.inputs[0])!;
      const x = tf.tidy(() => tf.randomNormal(shape, 0, 1, 'float32', seed).dataSync() as Float32Array);
      const want = exec.run({ [g.inputs[0]]: x });
      const got = runner.predict({ [runner.inputNames[0]]: { dtype: 'float32', dims: shape, data: x } });
      g.outputs.forEach((o, k) => {
        const a = got[runner.outputNames[k]];
        const b = want[o];
        if (a.length !== b.length) throw new Error(`output ${o}: ${a.length} values, expected ${b.length}`);
        let err = 0;
        let mag = 1e-6;
        for (let i = 0; i < b.length; i++) {
          err = Math.max(err, Math.abs(a[i] - b[i]));
          mag = Math.max(mag, Math.abs(b[i]));
        }
        worst = Math.max(worst, Number.isNaN(err) ? Infinity : err / mag);
      });
    }
  } finally {
    runner.dispose();
    exec.dispose();
  }
  return worst;
}

let seed = 11;
const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2 * scale);

/**
 * Every op kind the writer knows, in one graph with random weights: strided, dilated and SAME/VALID
 * convolutions, a depthwise multiplier, fused and standalone activations, binary ops on 4-D and
 * 2-D tensors, pools, pad, both kinds of mean, reshape, dense, softmax; two outputs.
 */
function everyOpGraph(): IrGraph {
  const w = (kind: 'conv2d' | 'depthwise', layer: string, input: string, kernelShape: [number, number, number, number], o: Partial<IrConv>): IrOp => ({
    kind,
    layer,
    inputs: [input],
    output: layer,
    kernel: rand(kernelShape.reduce((a, b) => a * b, 1), 0.5),
    kernelShape,
    bias: rand(kind === 'depthwise' ? kernelShape[2] * kernelShape[3] : kernelShape[3], 0.2),
    strides: [1, 1],
    dilation: [1, 1],
    padding: 'SAME',
    activation: 'NONE',
    ...o,
  });
  const ops: IrOp[] = [
    w('conv2d', 'c1', 'x', [3, 3, 3, 4], { activation: 'RELU' }),
    w('depthwise', 'dw', 'c1', [3, 3, 4, 2], { strides: [2, 2], activation: 'RELU6' }),
    w('conv2d', 'dil', 'dw', [3, 3, 8, 8], { dilation: [2, 2] }),
    w('conv2d', 'valid', 'dil', [1, 1, 8, 8], { padding: 'VALID' }),
    { kind: 'add', layer: 'add', inputs: ['dw', 'valid'], output: 'add', activation: 'RELU' },
    { kind: 'mul', layer: 'mul', inputs: ['add', 'dil'], output: 'mul', activation: 'NONE' },
    { kind: 'sub', layer: 'sub', inputs: ['mul', 'dw'], output: 'sub', activation: 'NONE' },
    { kind: 'leakyrelu', layer: 'lrelu', inputs: ['sub'], output: 'lrelu', alpha: 0.1 },
    { kind: 'hardswish', layer: 'hs', inputs: ['lrelu'], output: 'hs' },
    { kind: 'relu', layer: 'relu', inputs: ['sub'], output: 'relu' },
    { kind: 'relu6', layer: 'relu6', inputs: ['hs'], output: 'relu6' },
    { kind: 'concat', layer: 'cat', inputs: ['relu', 'relu6'], output: 'cat', axis: 3 },
    { kind: 'pad', layer: 'pad', inputs: ['cat'], output: 'pad', paddings: [[0, 0], [1, 1], [1, 1], [0, 0]] },
    { kind: 'maxpool', layer: 'max', inputs: ['pad'], output: 'max', pool: [2, 2], strides: [2, 2], padding: 'VALID' },
    { kind: 'avgpool', layer: 'avg', inputs: ['pad'], output: 'avg', pool: [3, 3], strides: [2, 2], padding: 'SAME' },
    { kind: 'mean', layer: 'gap', inputs: ['avg'], output: 'gap', keepDims: false },
    { kind: 'mean', layer: 'gapk', inputs: ['max'], output: 'gapk', keepDims: true },
    { kind: 'reshape', layer: 'flat', inputs: ['gapk'], output: 'flat', shape: [1, 16] },
    { kind: 'logistic', layer: 'sig', inputs: ['flat'], output: 'sig' },
    { kind: 'tanh', layer: 'tanh', inputs: ['gap'], output: 'tanh' },
    { kind: 'mul', layer: 'gate', inputs: ['sig', 'tanh'], output: 'gate', activation: 'NONE' },
    { kind: 'dense', layer: 'fc', inputs: ['gate'], output: 'fc', kernel: rand(160, 0.5), kernelShape: [16, 10], bias: rand(10, 0.1), activation: 'RELU6' },
    { kind: 'softmax', layer: 'prob', inputs: ['fc'], output: 'prob' },
  ];
  const shapes = new Map<string, number[]>([
    ['x', [1, 8, 8, 3]], ['c1', [1, 8, 8, 4]], ['dw', [1, 4, 4, 8]], ['dil', [1, 4, 4, 8]], ['valid', [1, 4, 4, 8]], ['add', [1, 4, 4, 8]], ['mul', [1, 4, 4, 8]], ['sub', [1, 4, 4, 8]],
    ['lrelu', [1, 4, 4, 8]], ['hs', [1, 4, 4, 8]], ['relu', [1, 4, 4, 8]], ['relu6', [1, 4, 4, 8]], ['cat', [1, 4, 4, 16]], ['pad', [1, 6, 6, 16]], ['max', [1, 3, 3, 16]], ['avg', [1, 3, 3, 16]],
    ['gap', [1, 16]], ['gapk', [1, 1, 1, 16]], ['flat', [1, 16]], ['sig', [1, 16]], ['tanh', [1, 16]], ['gate', [1, 16]], ['fc', [1, 10]], ['prob', [1, 10]],
  ]);
  return { inputs: ['x'], outputs: ['prob', 'cat'], ops, shapes, changes: [] };
}

/** Ranges for the int8 conversion of the same graph (only its structure is compared here). */
const unitRanges = (g: IrGraph) => new Map<string, [number, number]>([...g.shapes.keys()].map((id) => [id, [-4, 4]]));

/** The model with its first float kernel in the wrong element order (what a layout bug in the writer does). */
function scrambleFirstKernel(m: TfliteModel): TfliteModel {
  const t = m.tensors.find((x) => x.type === 'float32' && x.data && x.name.endsWith('/weights'))!;
  const data = new Float32Array(t.data!.slice().buffer).reverse();
  return { ...m, tensors: m.tensors.map((x) => (x === t ? { ...x, data: new Uint8Array(data.buffer) } : x)) };
}

describe('the fp32 .tflite writer, op by op against TensorFlow.js', () => {
  beforeAll(async () => {
    await loadTf();
  });

  it('writes every op kind in float32 with the int8 file\'s operators, and the interpreter matches TensorFlow.js', async () => {
    const g = everyOpGraph();
    const kinds = new Set(g.ops.map((o) => o.kind));
    for (const k of ['conv2d', 'depthwise', 'dense', 'add', 'mul', 'sub', 'concat', 'maxpool', 'avgpool', 'mean', 'reshape', 'pad', 'relu', 'relu6', 'logistic', 'tanh', 'softmax', 'hardswish', 'leakyrelu'] as const) expect(kinds).toContain(k);
    const fp32 = convertToFloatTflite(g).model;
    const int8 = convertToTflite(g, unitRanges(g), { ioType: 'float32', perChannel: true }).model;
    // Same operators in the same order; the int8 file only adds QUANTIZE/DEQUANTIZE at its edges.
    expect(fp32.operators.map((o) => o.op)).toEqual(int8.operators.map((o) => o.op).filter((op) => op !== 'QUANTIZE' && op !== 'DEQUANTIZE'));
    const read = readTflite(writeTflite(fp32));
    expect(read.tensors.every((t) => t.quantization === undefined)).toBe(true);
    expect(read.tensors.every((t) => t.type === 'float32' || (t.type === 'int32' && t.data))).toBe(true);
    expect([...read.inputs, ...read.outputs].map((i) => read.tensors[i].type)).toEqual(['float32', 'float32', 'float32']);
    expect(read.operators.every((o) => o.version === 1)).toBe(true);

    const err = await irAgainstTflite(g, writeTflite(fp32), [1, 2, 3]);
    expect(err).toBeLessThanOrEqual(FLOAT_TOLERANCE);
    // The negative twin: a kernel written in the wrong order is far outside the tolerance.
    expect(await irAgainstTflite(g, writeTflite(scrambleFirstKernel(fp32)), [1, 2, 3])).toBeGreaterThan(100 * FLOAT_TOLERANCE);
  });

  it('refuses an unfolded BatchNorm like the int8 writer', () => {
    const g: IrGraph = { inputs: ['x'], outputs: ['bn'], ops: [{ kind: 'batchnorm', layer: 'bn', inputs: ['x'], output: 'bn', scale: new Float32Array(3), shift: new Float32Array(3) }], shapes: new Map([['x', [1, 2, 2, 3]], ['bn', [1, 2, 2, 3]]]), changes: [] };
    expect(() => convertToFloatTflite(g)).toThrow(/BatchNorm bn reached the writer unfolded/);
  });

  it('names the twin beside the int8 file', () => {
    expect(fp32TwinPath('/r/model.int8.tflite')).toBe('/r/model.fp32.tflite');
    expect(fp32TwinPath('/r/mnist.tflite')).toBe('/r/mnist.fp32.tflite');
    expect(fp32TwinPath('/r/model.fp32.tflite')).toBe('/r/model.fp32.fp32.tflite');
  });
});

describe.each(MNIST)('$name: quantize writes the fp32 .tflite; its benchmark is int8 against fp32 in one interpreter', ({ path }) => {
  const model: ModelRef = { path, format: 'tfjs-layers' };
  const inputs = [{ name: 'x', dtype: 'float32', shape: [1, 28, 28, 1] }];
  const data = (spec: string) => openDataset(spec, { inputs });
  const backend = new TfjsBackend();
  const dir = mkdtempSync(join(work, 'run-'));
  const out = join(dir, 'model.int8.tflite');
  const twin = join(dir, 'model.fp32.tflite');

  beforeAll(async () => {
    await loadTf();
    const table = await backend.calibrate(model, data('mnist:calib'), { method: 'minmax', samples: 64, target }, ctx);
    const q = await backend.quantize(model, table, quantizeOptionsFor(target, { output: out, biasCorrection: true, correctionData: data('mnist:calib') }), ctx);
    expect(q.artifacts).toBeUndefined();
    expect(existsSync(twin)).toBe(true);
    expect(q.preparation.map((c) => c.kind)).not.toContain('fp32-reference-not-written');
  });

  it('the fp32 .tflite is the int8 graph in float32: float I/O and weights, no quantization parameters', () => {
    const f = readTflite(new Uint8Array(readFileSync(twin)));
    const q = readTflite(new Uint8Array(readFileSync(out)));
    expect(f.operators.map((o) => o.op)).toEqual(q.operators.map((o) => o.op).filter((op) => op !== 'QUANTIZE' && op !== 'DEQUANTIZE'));
    expect(f.tensors.every((t) => !t.quantization)).toBe(true);
    expect(f.tensors.filter((t) => t.data && t.name.match(/\/(weights|bias)$/)).every((t) => t.type === 'float32')).toBe(true);
    expect([...f.inputs, ...f.outputs].map((i) => f.tensors[i].type)).toEqual(['float32', 'float32']);
    expect(f.description).toMatch(/fp32 reference of model\.json/);
  });

  it('in the TFLite interpreter it computes what TensorFlow.js computes on 500 held-out digits; a scrambled kernel does not', async () => {
    const r = await compareRunners(model, { path: twin, format: 'tflite' }, data('mnist:test'), 500);
    expect(r.samples).toBe(500);
    expect(r.relError).toBeLessThanOrEqual(FLOAT_TOLERANCE);
    expect(r.top1Differs).toBe(0);
    const broken = join(dir, 'broken.fp32.tflite');
    writeFileSync(broken, writeTflite(scrambleFirstKernel(readTflite(new Uint8Array(readFileSync(twin))))));
    const b = await compareRunners(model, { path: broken, format: 'tflite' }, data('mnist:test'), 50);
    expect(b.relError).toBeGreaterThan(100 * FLOAT_TOLERANCE);
  });

  it('the run\'s benchmark times int8 against the fp32 .tflite in one interpreter; against TensorFlow.js only when asked, labeled', async () => {
    const bench = await backend.benchmark({ path: out, format: 'tflite' }, { threads: 1, warmup: 2, runs: 20, compare: model }, ctx);
    expect(bench.compare!.model).toEqual({ path: twin, format: 'tflite' });
    expect(bench.runtime).toMatch(/^tflite-wasm [^ ]+$/);
    expect(bench.crossRuntime).toBeUndefined();
    expect(bench.speedupEstimate!.median).toBeGreaterThan(0);
    // `qforge benchmark x.int8.tflite --compare model.fp32.tflite`: the same comparison by name.
    const byName = await new TfjsBackend().benchmark({ path: out, format: 'tflite' }, { threads: 1, warmup: 2, runs: 10, compare: { path: twin, format: 'tflite' } }, ctx);
    expect(byName.crossRuntime).toBeUndefined();
    // Another process naming the TensorFlow.js model asks for the cross-runtime ratio and gets it, labeled.
    const cross = await new TfjsBackend().benchmark({ path: out, format: 'tflite' }, { threads: 1, warmup: 2, runs: 10, compare: model }, ctx);
    expect(cross.compare!.model).toEqual(model);
    expect(cross.crossRuntime).toEqual({ primary: expect.stringMatching(/^tflite-wasm/), compare: expect.stringMatching(/^tfjs/) });
  });

  it('a changed fp32 .tflite is not used as the reference', async () => {
    const saved = join(dir, 'saved.tflite');
    copyFileSync(twin, saved);
    try {
      writeFileSync(twin, writeTflite(scrambleFirstKernel(readTflite(new Uint8Array(readFileSync(saved))))));
      const bench = await backend.benchmark({ path: out, format: 'tflite' }, { threads: 1, warmup: 1, runs: 5, compare: model }, ctx);
      expect(bench.compare!.model).toEqual(model);
      expect(bench.crossRuntime).toBeDefined();
    } finally {
      copyFileSync(saved, twin);
    }
  });

  it('variants written beside the model share its fp32 .tflite instead of leaving copies', async () => {
    const table = await backend.calibrate(model, data('mnist:calib'), { method: 'minmax', samples: 16, target }, ctx);
    const variant = join(dir, 'without-bias-correction.tflite');
    const q = await backend.quantize(model, table, quantizeOptionsFor(target, { output: variant, biasCorrection: false }), ctx);
    expect(q.artifacts).toBeUndefined();
    expect(existsSync(fp32TwinPath(variant))).toBe(false);
    expect(basename(twin)).toBe('model.fp32.tflite');
  });
});
