#!/usr/bin/env node
// Outside check (no qforge code: onnxruntime-node, its own .npy parser and metrics): runs an fp32
// model and its int8 version on every sample of a float32 .npy batch [N, …] and prints SNR, cosine
// and per-position top-1 agreement of the first output, to compare with what qforge printed.
// Usage: node tools/outside/npy-fidelity.js <fp32.onnx> <int8.onnx> <data.npy>
const ort = require("onnxruntime-node");
const fs = require('fs');
function npy(f) {
  const b = fs.readFileSync(f); const hl = b.readUInt16LE(8); const h = b.toString('latin1', 10, 10 + hl);
  const shape = /\(([^)]*)\)/.exec(h)[1].split(',').filter(s => s.trim()).map(Number);
  if (!h.includes("'<f4'")) throw new Error('f4 only');
  return { shape, data: new Float32Array(b.buffer.slice(b.byteOffset + 10 + hl, b.byteOffset + b.length)) };
}
(async () => {
  const [ref, cand, data, ...rest] = process.argv.slice(2);
  const a = npy(data); const per = a.shape.slice(1).reduce((x, y) => x * y, 1);
  const opt = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 1 };
  const r = await ort.InferenceSession.create(ref, opt), c = await ort.InferenceSession.create(cand, opt);
  let sig = 0, noise = 0, agree = 0, pos = 0, dot = 0, nr = 0, nc = 0, exact = 0;
  const N = a.shape[0];
  for (let i = 0; i < N; i++) {
    const x = new ort.Tensor('float32', a.data.slice(i * per, (i + 1) * per), [1, ...a.shape.slice(1)]);
    const feeds = { [r.inputNames[0]]: x };
    const ro = (await r.run(feeds))[r.outputNames[0]], co = (await c.run(feeds))[c.outputNames[0]];
    for (let k = 0; k < ro.data.length; k++) { sig += ro.data[k] ** 2; noise += (ro.data[k] - co.data[k]) ** 2; dot += ro.data[k] * co.data[k]; nr += ro.data[k] ** 2; nc += co.data[k] ** 2; }
    const C = ro.dims[ro.dims.length - 1]; const T = ro.data.length / C; let same = true;
    for (let t = 0; t < T; t++) {
      let ar = 0, ac = 0;
      for (let k = 1; k < C; k++) { if (ro.data[t * C + k] > ro.data[t * C + ar]) ar = k; if (co.data[t * C + k] > co.data[t * C + ac]) ac = k; }
      pos++; if (ar === ac) agree++; else same = false;
    }
    if (same) exact++;
  }
  console.log(JSON.stringify({ samples: N, outputDims: 'per sample', snrDb: +(10 * Math.log10(sig / noise)).toFixed(2), cosine: +(dot / Math.sqrt(nr * nc)).toFixed(5), top1AgreePerPosition: +(agree / pos).toFixed(4), samplesAllPositionsSame: exact }));
})();
