#!/usr/bin/env node
// Writes a transformer-shaped ONNX model of a chosen size with its weights in one external data file,
// tensor by tensor (memory stays at one tensor whatever the size), for measuring quantization time and
// peak memory on models over 2 GiB. Encoder layers as build-transformer-fixture.js writes them (MatMul
// + Add projections, attention with Reshape/Transpose/Softmax, ReLU FFN), d=2048, FFN 8192, sequence 16.
// Weights are uniform noise of BERT's init scale: a size-and-shape fixture, not a trained model. Never commit its output.
// Usage: node tools/build-big-transformer.js <out.onnx> [sizeGB=2.5]
const { closeSync, fsyncSync, openSync, writeSync } = require('node:fs');
const { basename, resolve } = require('node:path');
const { mulberry32 } = require('@qforge/core');
const { DataType, encodeModel, intAttr, intsAttr, makeNode, makeTensor, makeValueInfo } = require('@qforge/onnx');
const { writeFileSync } = require('node:fs');

const OUT = resolve(process.argv[2] ?? 'out/models/big-transformer.onnx');
const SIZE_GB = Number(process.argv[3] ?? 2.5);
const D = 2048, F = 8192, H = 16, T = 16;
const perLayer = 4 * (4 * D * D + 2 * D * F);
const L = Math.max(1, Math.round((SIZE_GB * 1e9) / perLayer));
const dataName = `${basename(OUT)}.data`;
const fd = openSync(`${OUT}.data`, 'w');
let offset = 0;
const rnd = mulberry32(7);
const inits = [];
const nodes = [];
let k = 0;
const op = (type, inputs, attrs = []) => {
  const out = `${type.toLowerCase()}_${k++}`;
  nodes.push(makeNode(type, inputs, [out], out, attrs));
  return out;
};
const small = (name, dims, data) => (inits.push(makeTensor(name, dims, data)), name);
/** A weight written straight to the side file, 4 KiB aligned; the proto only records where. */
function external(name, dims) {
  const n = dims.reduce((a, b) => a * b, 1);
  const pad = (4096 - (offset % 4096)) % 4096;
  if (pad) writeSync(fd, new Uint8Array(pad)), (offset += pad);
  const chunk = new Float32Array(Math.min(n, 1 << 22));
  for (let done = 0; done < n; done += chunk.length) {
    const len = Math.min(chunk.length, n - done);
    for (let i = 0; i < len; i++) chunk[i] = (rnd() - 0.5) * 0.07;
    const bytes = new Uint8Array(chunk.buffer, 0, len * 4);
    for (let w = 0; w < bytes.length; ) w += writeSync(fd, bytes, w, bytes.length - w);
  }
  inits.push({ name, dims, dataType: DataType.FLOAT, dataLocation: 1, externalData: [{ key: 'location', value: dataName }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(n * 4) }] });
  offset += n * 4;
  return name;
}
small('shape_heads', [4], BigInt64Array.from([1n, BigInt(T), BigInt(H), BigInt(D / H)]));
small('shape_model', [3], BigInt64Array.from([1n, BigInt(T), BigInt(D)]));
small('att_scale', [], Float32Array.from([1 / Math.sqrt(D / H)]));
const linear = (x, p, din, dout) => op('Add', [op('MatMul', [x, external(`${p}.weight`, [din, dout])]), small(`${p}.bias`, [dout], new Float32Array(dout))]);
const heads = (x, perm) => op('Transpose', [op('Reshape', [x, 'shape_heads'])], [intsAttr('perm', perm)]);
let x = 'embeddings';
for (let l = 0; l < L; l++) {
  const p = `layer${l}`;
  const q = heads(linear(x, `${p}.q`, D, D), [0, 2, 1, 3]);
  const kk = heads(linear(x, `${p}.k`, D, D), [0, 2, 3, 1]);
  const v = heads(linear(x, `${p}.v`, D, D), [0, 2, 1, 3]);
  const scores = op('Softmax', [op('Mul', [op('MatMul', [q, kk]), 'att_scale'])], [intAttr('axis', -1)]);
  const ctx = op('Reshape', [op('Transpose', [op('MatMul', [scores, v])], [intsAttr('perm', [0, 2, 1, 3])]), 'shape_model']);
  x = op('Add', [x, linear(ctx, `${p}.o`, D, D)]);
  x = op('Add', [x, linear(op('Relu', [linear(x, `${p}.ffn1`, D, F)]), `${p}.ffn2`, F, D)]);
  process.stderr.write(`layer ${l + 1}/${L}\r`);
}
nodes.push(makeNode('Identity', [x], ['last_hidden_state'], 'output'));
fsyncSync(fd);
closeSync(fd);
const proto = {
  irVersion: 8,
  opsetImport: [{ domain: '', version: 13 }],
  producerName: 'qforge-tools',
  graph: { name: 'big-encoder', node: nodes, initializer: inits, input: [makeValueInfo('embeddings', DataType.FLOAT, [1, T, D])], output: [makeValueInfo('last_hidden_state', DataType.FLOAT, [1, T, D])], valueInfo: [] },
};
writeFileSync(OUT, encodeModel(proto));
console.log(`wrote ${OUT} (${L} layers, d=${D}, FFN ${F}) and ${OUT}.data (${(offset / 1e9).toFixed(2)} GB)`);
