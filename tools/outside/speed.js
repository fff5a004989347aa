#!/usr/bin/env node
// Independent check of a speedup qforge printed: times two ONNX models alternately in
// onnxruntime-node (1 thread, all graph optimizations), no qforge code, and prints the ratio of
// medians. Inputs: zeros or uniform noise of the given shape (latency of these models does not
// depend on the values).
// Usage: node tools/outside/speed.js <fp32.onnx> <int8.onnx> <d0,d1,...> [seconds per model, default 3]
const ort = require('onnxruntime-node');
const [a, b, shapeText, seconds = '3'] = process.argv.slice(2);
if (!a || !b || !shapeText) {
  console.error('usage: node tools/outside/speed.js <fp32.onnx> <int8.onnx> <d0,d1,...> [seconds]');
  process.exit(2);
}
const shape = shapeText.split(',').map(Number);

(async () => {
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' };
  const sessions = [await ort.InferenceSession.create(a, opts), await ort.InferenceSession.create(b, opts)];
  const n = shape.reduce((x, y) => x * y, 1);
  const data = Float32Array.from({ length: n }, (_, i) => ((i * 2654435761) % 1000) / 1000);
  const feeds = sessions.map((s) => ({ [s.inputNames[0]]: new ort.Tensor('float32', data, shape) }));
  for (const [i, s] of sessions.entries()) for (let k = 0; k < 10; k++) await s.run(feeds[i]);
  const times = [[], []];
  const budget = Number(seconds) * 1000;
  let spent = 0;
  for (let k = 0; spent < 2 * budget && k < 20000; k++) {
    // A B, B A, A B, …: drift hits both alike.
    const order = k % 2 ? [1, 0] : [0, 1];
    for (const i of order) {
      const t0 = process.hrtime.bigint();
      await sessions[i].run(feeds[i]);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      times[i].push(ms);
      spent += ms;
    }
  }
  const median = (x) => {
    const s = [...x].sort((p, q) => p - q);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const [ma, mb] = times.map(median);
  console.log(`fp32 median ${ma.toFixed(4)} ms, int8 median ${mb.toFixed(4)} ms, ratio of medians ${(ma / mb).toFixed(3)}× over ${times[0].length} alternated runs each (1 thread)`);
})();
