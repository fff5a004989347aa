#!/usr/bin/env node
// Trains a small byte-level GPT (causal, pre-LayerNorm; default 2 layers, d=128, 4 heads, FFN 512,
// context 64) on text from this machine (the repo's docs and /usr/share/common-licenses) with
// TensorFlow.js (wasm backend when it loads, else cpu) and writes it as ONNX in the shape
// build-transformer-fixture.js --tokens uses: `input_ids` + `attention_mask` (int64, symbolic
// [batch, sequence]) → logits [batch, sequence, 256], LayerNorm and GELU decomposed as PyTorch
// exports them, plus a causal mask. Also writes token data: calib/*.npz from the training text and
// eval.npz from held-out text (the last 10% of every source file, never trained on). Deterministic
// for the same text (the docs change with the repo) and step count. The ONNX logits are checked against
// TensorFlow.js before the script ends.
// Usage: node tools/train-byte-gpt.js [out.onnx=out/models/byte-gpt.onnx] [--data out/data/byte-gpt]
//        [--steps 700] [--layers 2] [--dim 128] [--batch 32] [--eval 64]
const { mkdirSync, readFileSync, readdirSync, existsSync, writeFileSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');
const tf = require('@tensorflow/tfjs');
const { encodeNpz, mulberry32 } = require('@qforge/core');
const { DataType, intAttr, intsAttr, makeNode, makeTensor, makeValueInfo, saveModel } = require('@qforge/onnx');

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const OUT = resolve(argv.find((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1].startsWith('--'))) ?? 'out/models/byte-gpt.onnx');
const DATA = resolve(opt('data', 'out/data/byte-gpt'));
const STEPS = Number(opt('steps', 700));
const L = Number(opt('layers', 2));
const D = Number(opt('dim', 128));
const BATCH = Number(opt('batch', 32));
const EVAL = Number(opt('eval', 64));
const H = 4, F = 4 * D, T = 64, V = 256, EPS = 1e-5, NEG = -10000;

// ---- text: the repo's docs and the licenses Debian ships; each file split 90% train / 10% held out
const sources = [
  ...readdirSync(join(__dirname, '..', 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => join(__dirname, '..', 'docs', f)),
  ...(existsSync('/usr/share/common-licenses') ? readdirSync('/usr/share/common-licenses').sort().map((f) => join('/usr/share/common-licenses', f)) : []),
];
const train = [];
const held = [];
const seen = new Set();
for (const f of sources) {
  const b = readFileSync(f);
  // Symlinked licenses (GPL → GPL-3) would put the same text on both sides of the split.
  const key = b.toString('latin1');
  if (seen.has(key)) continue;
  seen.add(key);
  const cut = Math.floor(b.length * 0.9);
  train.push(b.subarray(0, cut));
  held.push(b.subarray(cut));
}
const trainText = Buffer.concat(train);
const heldText = Buffer.concat(held);

// ---- parameters (GPT-2 init: N(0, 0.02), residual projections scaled by 1/√(2L))
const rnd = mulberry32(1234);
const randn = (n, std) => Float32Array.from({ length: n }, () => std * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
const params = {};
const param = (name, dims, init) => (params[name] = tf.variable(tf.tensor(init, dims), true, name));
param('tok_emb', [V, D], randn(V * D, 0.02));
param('pos_emb', [T, D], randn(T * D, 0.01));
for (let l = 0; l < L; l++) {
  const p = `layer${l}`;
  for (const ln of ['ln1', 'ln2']) {
    param(`${p}.${ln}.gamma`, [D], new Float32Array(D).fill(1));
    param(`${p}.${ln}.beta`, [D], new Float32Array(D));
  }
  for (const [n, din, dout, std] of [['q', D, D, 0.02], ['k', D, D, 0.02], ['v', D, D, 0.02], ['o', D, D, 0.02 / Math.sqrt(2 * L)], ['ffn1', D, F, 0.02], ['ffn2', F, D, 0.02 / Math.sqrt(2 * L)]]) {
    param(`${p}.${n}.weight`, [din, dout], randn(din * dout, std));
    param(`${p}.${n}.bias`, [dout], new Float32Array(dout));
  }
}
param('ln_f.gamma', [D], new Float32Array(D).fill(1));
param('ln_f.beta', [D], new Float32Array(D));
param('lm_head', [D, V], randn(D * V, 0.02));

const causalData = new Float32Array(T * T);
for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) causalData[i * T + j] = NEG;

// ---- forward in TensorFlow.js (training: full windows, no padding)
function layerNormTf(x, p) {
  const mean = x.mean(-1, true);
  const c = x.sub(mean);
  const variance = c.square().mean(-1, true);
  return c.div(variance.add(EPS).sqrt()).mul(params[`${p}.gamma`]).add(params[`${p}.beta`]);
}
const linearTf = (x, p) => tf.add(tf.matMul(x.reshape([-1, x.shape[x.shape.length - 1]]), params[`${p}.weight`]).reshape([...x.shape.slice(0, -1), -1]), params[`${p}.bias`]);
function forwardTf(ids) {
  const [B, len] = ids.shape;
  const causal = tf.tensor(causalData, [T, T]).slice([0, 0], [len, len]);
  // One-hot × table instead of gather: the wasm backend has no gradient kernel for Gather.
  let x = tf.matMul(tf.oneHot(ids.reshape([-1]), V), params.tok_emb).reshape([B, len, D]).add(params.pos_emb.slice([0, 0], [len, D]));
  const split = (t) => t.reshape([B, len, H, D / H]).transpose([0, 2, 1, 3]);
  for (let l = 0; l < L; l++) {
    const p = `layer${l}`;
    const h = layerNormTf(x, `${p}.ln1`);
    const q = split(linearTf(h, `${p}.q`));
    const k = split(linearTf(h, `${p}.k`));
    const v = split(linearTf(h, `${p}.v`));
    const scores = tf.softmax(tf.matMul(q, k, false, true).mul(1 / Math.sqrt(D / H)).add(causal));
    const ctx = tf.matMul(scores, v).transpose([0, 2, 1, 3]).reshape([B, len, D]);
    x = x.add(linearTf(ctx, `${p}.o`));
    const h2 = linearTf(layerNormTf(x, `${p}.ln2`), `${p}.ffn1`);
    const gelu = h2.mul(0.5).mul(tf.erf(h2.div(Math.SQRT2)).add(1));
    x = x.add(linearTf(gelu, `${p}.ffn2`));
  }
  const y = layerNormTf(x, 'ln_f');
  return tf.matMul(y.reshape([-1, D]), params.lm_head).reshape([B, len, V]);
}

function batchFrom(text, count, len, r) {
  const ids = new Int32Array(count * (len + 1));
  for (let b = 0; b < count; b++) {
    const start = Math.floor(r() * (text.length - len - 1));
    for (let t = 0; t <= len; t++) ids[b * (len + 1) + t] = text[start + t];
  }
  const all = tf.tensor2d(ids, [count, len + 1], 'int32');
  const [x, y] = [all.slice([0, 0], [count, len]), all.slice([0, 1], [count, len])];
  all.dispose();
  return { x, y };
}

const lossOf = (x, y) => tf.losses.softmaxCrossEntropy(tf.oneHot(y.reshape([-1]), V), forwardTf(x).reshape([-1, V]));

// ---- the ONNX graph of the same network
function buildOnnx(values) {
  const nodes = [];
  const inits = [];
  const c = (name, dims, data) => (inits.push(makeTensor(name, dims, data)), name);
  const i64 = (name, vals) => (inits.push(makeTensor(name, [vals.length], BigInt64Array.from(vals.map(BigInt)))), name);
  let k = 0;
  const op = (type, inputs, attrs = []) => {
    const out = `${type.toLowerCase()}_${k++}`;
    nodes.push(makeNode(type, inputs, [out], out, attrs));
    return out;
  };
  const w = (name) => c(name, params[name].shape, values[name]);
  c('eps', [], Float32Array.from([EPS]));
  c('two', [], Float32Array.from([2]));
  c('half', [], Float32Array.from([0.5]));
  c('one', [], Float32Array.from([1]));
  c('sqrt2', [], Float32Array.from([Math.SQRT2]));
  c('neg_big', [], Float32Array.from([NEG]));
  c('att_scale', [], Float32Array.from([1 / Math.sqrt(D / H)]));
  c('causal_mask', [T, T], causalData);
  i64('shape_heads', [0, -1, H, D / H]);
  i64('shape_model', [0, -1, D]);
  i64('zero1', [0]);
  i64('one1', [1]);
  i64('two1', [2]);
  i64('zero2', [0, 0]);
  i64('axes01', [0, 1]);
  i64('one2', [1, 2]);
  const layerNorm = (x, p) => {
    const mean = op('ReduceMean', [x], [intsAttr('axes', [-1])]);
    const centred = op('Sub', [x, mean]);
    const varc = op('ReduceMean', [op('Pow', [centred, 'two'])], [intsAttr('axes', [-1])]);
    const normed = op('Div', [centred, op('Sqrt', [op('Add', [varc, 'eps'])])]);
    return op('Add', [op('Mul', [normed, w(`${p}.gamma`)]), w(`${p}.beta`)]);
  };
  const linear = (x, p) => op('Add', [op('MatMul', [x, w(`${p}.weight`)]), w(`${p}.bias`)]);
  const heads = (x, perm) => op('Transpose', [op('Reshape', [x, 'shape_heads'])], [intsAttr('perm', perm)]);

  const seqLen = op('Slice', [op('Shape', ['input_ids']), 'one1', 'two1']);
  const positions = op('Slice', [w('pos_emb'), 'zero1', seqLen, 'zero1']);
  let x = op('Add', [op('Gather', [w('tok_emb'), 'input_ids']), positions]);
  // Padded keys: (1 − mask) · −10000, [batch, 1, 1, sequence]; the causal mask hides later positions.
  const keep = op('Cast', ['attention_mask'], [intAttr('to', DataType.FLOAT)]);
  const padBias = op('Unsqueeze', [op('Mul', [op('Sub', ['one', keep]), 'neg_big']), 'one2']);
  const causal = op('Slice', ['causal_mask', 'zero2', op('Concat', [seqLen, seqLen], [intAttr('axis', 0)]), 'axes01']);
  const maskBias = op('Add', [padBias, causal]);
  for (let l = 0; l < L; l++) {
    const p = `layer${l}`;
    const h = layerNorm(x, `${p}.ln1`);
    const q = heads(linear(h, `${p}.q`), [0, 2, 1, 3]);
    const kk = heads(linear(h, `${p}.k`), [0, 2, 3, 1]);
    const v = heads(linear(h, `${p}.v`), [0, 2, 1, 3]);
    const scores = op('Softmax', [op('Add', [op('Mul', [op('MatMul', [q, kk]), 'att_scale']), maskBias])], [intAttr('axis', -1)]);
    const ctx = op('Reshape', [op('Transpose', [op('MatMul', [scores, v])], [intsAttr('perm', [0, 2, 1, 3])]), 'shape_model']);
    x = op('Add', [x, linear(ctx, `${p}.o`)]);
    const h2 = linear(layerNorm(x, `${p}.ln2`), `${p}.ffn1`);
    const gelu = op('Mul', [op('Mul', [h2, 'half']), op('Add', [op('Erf', [op('Div', [h2, 'sqrt2'])]), 'one'])]);
    x = op('Add', [x, linear(gelu, `${p}.ffn2`)]);
  }
  nodes.push(makeNode('MatMul', [layerNorm(x, 'ln_f'), w('lm_head')], ['logits'], 'lm_head'));
  const ids = (n) => makeValueInfo(n, DataType.INT64, ['batch', 'sequence']);
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'qforge-tools/train-byte-gpt',
    graph: { name: 'byte-gpt', node: nodes, initializer: inits, input: [ids('input_ids'), ids('attention_mask')], output: [makeValueInfo('logits', DataType.FLOAT, ['batch', 'sequence', V])], valueInfo: [] },
  };
}

// ---- token data: calib/ from the training text, eval.npz from held-out text
function writeTokenData() {
  const r = mulberry32(99);
  const i64 = (dims, data) => ({ dtype: 'int64', dims, data });
  mkdirSync(join(DATA, 'calib'), { recursive: true });
  for (let i = 0; i < 32; i++) {
    const start = Math.floor(r() * (trainText.length - T));
    const ids = BigInt64Array.from(trainText.subarray(start, start + T), (b) => BigInt(b));
    writeFileSync(join(DATA, 'calib', `s${String(i).padStart(3, '0')}.npz`), encodeNpz({ input_ids: i64([1, T], ids), attention_mask: i64([1, T], new BigInt64Array(T).fill(1n)) }));
  }
  // Evaluation windows tile the held-out text; every fourth one has its last quarter padded (mask 0).
  const stride = Math.floor((heldText.length - T) / EVAL);
  const ids = new BigInt64Array(EVAL * T);
  const mask = new BigInt64Array(EVAL * T).fill(1n);
  for (let i = 0; i < EVAL; i++) {
    for (let t = 0; t < T; t++) ids[i * T + t] = BigInt(heldText[i * stride + t]);
    if (i % 4 === 3) for (let t = (3 * T) / 4; t < T; t++) (ids[i * T + t] = 0n), (mask[i * T + t] = 0n);
  }
  writeFileSync(join(DATA, 'eval.npz'), encodeNpz({ input_ids: i64([EVAL, 1, T], ids), attention_mask: i64([EVAL, 1, T], mask) }));
}

async function main() {
  try {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
    await tf.setBackend('wasm');
  } catch {
    await tf.setBackend('cpu');
  }
  await tf.ready();
  console.log(`backend ${tf.getBackend()}; ${L} layers, d=${D}, ${H} heads, FFN ${F}, context ${T}; ${Object.values(params).reduce((a, p) => a + p.size, 0)} parameters`);
  console.log(`text: ${trainText.length} bytes to train on, ${heldText.length} held out, from ${seen.size} files`);
  const optimizer = tf.train.adam(3e-3, 0.9, 0.99);
  const r = mulberry32(5);
  const evalR = mulberry32(6);
  const held = batchFrom(heldText, 64, T, evalR);
  const t0 = Date.now();
  for (let step = 1; step <= STEPS; step++) {
    // Linear decay to 10% over the run keeps the last steps from undoing what was learned.
    optimizer.learningRate = 3e-3 * (1 - 0.9 * (step / STEPS));
    const { x, y } = batchFrom(trainText, BATCH, T, r);
    const cost = optimizer.minimize(() => lossOf(x, y), true);
    x.dispose();
    y.dispose();
    if (step % 50 === 0 || step === STEPS) {
      const heldLoss = tf.tidy(() => lossOf(held.x, held.y).dataSync()[0]);
      console.log(`step ${step}/${STEPS}: train loss ${cost.dataSync()[0].toFixed(3)}, held-out loss ${heldLoss.toFixed(3)} (perplexity ${Math.exp(heldLoss).toFixed(2)}), ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
    cost.dispose();
  }
  const values = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.dataSync()]));
  mkdirSync(dirname(OUT), { recursive: true });
  await saveModel(buildOnnx(values), OUT);
  writeTokenData();
  // The ONNX graph must compute what was trained: compare logits on held-out text, with padding.
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(OUT);
  const ids = held.x.slice([0, 0], [2, T]);
  const ref = tf.tidy(() => forwardTf(ids).dataSync());
  const idsData = BigInt64Array.from(ids.dataSync(), (v) => BigInt(v));
  const out = await session.run({ input_ids: new ort.Tensor('int64', idsData, [2, T]), attention_mask: new ort.Tensor('int64', new BigInt64Array(2 * T).fill(1n), [2, T]) });
  let maxErr = 0;
  out.logits.data.forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - ref[i]))));
  if (!(maxErr < 1e-3)) throw new Error(`the ONNX model disagrees with TensorFlow.js: max |Δlogit| ${maxErr}`);
  console.log(`wrote ${OUT} (ONNX logits match TensorFlow.js: max |Δ| ${maxErr.toExponential(2)}) and token data in ${DATA} (calib/ 32 × ${T} training bytes, eval.npz ${EVAL} × ${T} held-out bytes)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
