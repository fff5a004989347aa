#!/usr/bin/env node
// Writes a BERT-style encoder (4 layers, d=256, 4 heads, FFN 1024, sequence 128) as ONNX opset 13,
// exported the way PyTorch does: LayerNorm and GELU decomposed into primitive ops, attention as
// MatMul/Softmax with Reshape/Transpose. Weights are random (BERT's N(0, 0.02) init): it is a
// shape-and-op fixture for dynamic quantization speed and fidelity, not a trained model.
// With --tokens it is a byte-level language model over real token inputs, as transformers.js
// exports them: `input_ids` and `attention_mask` (int64, [batch, sequence], both symbolic),
// embedding Gather + positions, the mask added to the attention scores, logits [batch, sequence, 256].
// With --tied (implies --tokens) the LM head is the embedding table itself, through a Transpose, as
// PyTorch exports a model with tied input and output embeddings (GPT-2, BERT's MLM head).
// Usage: node tools/build-transformer-fixture.js [out.onnx] [--tokens] [--tied]
const { resolve } = require('node:path');
const { mulberry32 } = require('@qforge/core');
const { DataType, intAttr, intsAttr, makeNode, makeTensor, makeValueInfo, saveModel } = require('@qforge/onnx');

const TIED = process.argv.includes('--tied');
const TOKENS = TIED || process.argv.includes('--tokens');
const OUT = resolve(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'out/models/transformer-encoder.onnx');
const D = 256, H = 4, F = 1024, L = 4, T = 128;
const rnd = mulberry32(2024);
const randn = (n, std) => Float32Array.from({ length: n }, () => std * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
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

c('eps', [], Float32Array.from([1e-12]));
c('two', [], Float32Array.from([2]));
c('half', [], Float32Array.from([0.5]));
c('one', [], Float32Array.from([1]));
c('sqrt2', [], Float32Array.from([Math.SQRT2]));
c('att_scale', [], Float32Array.from([1 / Math.sqrt(D / H)]));
// Token mode keeps batch and sequence symbolic (0 copies a dim, -1 infers it).
i64('shape_heads', TOKENS ? [0, -1, H, D / H] : [1, T, H, D / H]);
i64('shape_model', TOKENS ? [0, -1, D] : [1, T, D]);
const V = 256;

function layerNorm(x, p) {
  const mean = op('ReduceMean', [x], [intsAttr('axes', [-1])]);
  const centred = op('Sub', [x, mean]);
  const varc = op('ReduceMean', [op('Pow', [centred, 'two'])], [intsAttr('axes', [-1])]);
  const normed = op('Div', [centred, op('Sqrt', [op('Add', [varc, 'eps'])])]);
  return op('Add', [op('Mul', [normed, c(`${p}.gamma`, [D], new Float32Array(D).fill(1))]), c(`${p}.beta`, [D], new Float32Array(D))]);
}
function linear(x, p, din, dout) {
  return op('Add', [op('MatMul', [x, c(`${p}.weight`, [din, dout], randn(din * dout, 0.02))]), c(`${p}.bias`, [dout], randn(dout, 0.02))]);
}
const heads = (x) => op('Transpose', [op('Reshape', [x, 'shape_heads'])], [intsAttr('perm', [0, 2, 1, 3])]);

let x = 'embeddings';
let maskBias;
if (TOKENS) {
  c('neg_big', [], Float32Array.from([-10000]));
  i64('zero1', [0]);
  i64('one1', [1]);
  i64('two1', [2]);
  const tokens = op('Gather', [c('tok_emb', [V, D], randn(V * D, 0.02)), 'input_ids']);
  const seqLen = op('Slice', [op('Shape', ['input_ids']), 'one1', 'two1']);
  const positions = op('Slice', [c('pos_emb', [512, D], randn(512 * D, 0.02)), 'zero1', seqLen, 'zero1']);
  x = op('Add', [tokens, positions]);
  // (1 - mask) · -10000 on the scores of padded keys, [batch, 1, 1, sequence].
  const keep = op('Cast', ['attention_mask'], [intAttr('to', DataType.FLOAT)]);
  maskBias = op('Unsqueeze', [op('Mul', [op('Sub', ['one', keep]), 'neg_big']), 'one2']);
  i64('one2', [1, 2]);
}
for (let l = 0; l < L; l++) {
  const p = `layer${l}`;
  const q = heads(linear(x, `${p}.q`, D, D));
  const kk = op('Transpose', [op('Reshape', [linear(x, `${p}.k`, D, D), 'shape_heads'])], [intsAttr('perm', [0, 2, 3, 1])]);
  const v = heads(linear(x, `${p}.v`, D, D));
  const scaled = op('Mul', [op('MatMul', [q, kk]), 'att_scale']);
  const scores = op('Softmax', [maskBias ? op('Add', [scaled, maskBias]) : scaled], [intAttr('axis', -1)]);
  const ctx = op('Reshape', [op('Transpose', [op('MatMul', [scores, v])], [intsAttr('perm', [0, 2, 1, 3])]), 'shape_model']);
  x = layerNorm(op('Add', [x, linear(ctx, `${p}.o`, D, D)]), `${p}.ln1`);
  const h = linear(x, `${p}.ffn1`, D, F);
  const gelu = op('Mul', [op('Mul', [h, 'half']), op('Add', [op('Erf', [op('Div', [h, 'sqrt2'])]), 'one'])]);
  x = layerNorm(op('Add', [x, linear(gelu, `${p}.ffn2`, F, D)]), `${p}.ln2`);
}
if (TIED) nodes.push(makeNode('Transpose', ['tok_emb'], ['lm_head_weight'], 'lm_head_tie', [intsAttr('perm', [1, 0])]), makeNode('MatMul', [x, 'lm_head_weight'], ['logits'], 'lm_head'));
else if (TOKENS) nodes.push(makeNode('MatMul', [x, c('lm_head', [D, V], randn(D * V, 0.02))], ['logits'], 'lm_head'));
else nodes.push(makeNode('Identity', [x], ['last_hidden_state'], 'output'));
const ids = (n) => makeValueInfo(n, DataType.INT64, ['batch', 'sequence']);

saveModel(
  {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'qforge-tools',
    graph: TOKENS
      ? { name: 'byte-lm', node: nodes, initializer: inits, input: [ids('input_ids'), ids('attention_mask')], output: [makeValueInfo('logits', DataType.FLOAT, ['batch', 'sequence', V])], valueInfo: [] }
      : { name: 'encoder', node: nodes, initializer: inits, input: [makeValueInfo('embeddings', DataType.FLOAT, [1, T, D])], output: [makeValueInfo('last_hidden_state', DataType.FLOAT, [1, T, D])], valueInfo: [] },
  },
  OUT,
).then(() => console.log(`wrote ${OUT}`));
