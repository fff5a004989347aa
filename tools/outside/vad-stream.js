#!/usr/bin/env node
// Outside check for Silero VAD (onnxruntime-node only): fp32 and int8 run over the held-out audio of
// tools/make-speech-data.js in order, each carrying its own recurrent state; prints how often their
// speech decisions (p > 0.5) agree and how each matches the synthesis truth.
// Usage: node tools/outside/vad-stream.js <fp32.onnx> <int8.onnx> <speechDataDir>
const ort = require("onnxruntime-node"); const fs = require('fs');
async function run(path, audio, rate) { const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  const chunk = rate === 8000 ? 256 : 512; let state = new Float32Array(256); const p = [];
  for (let k = 0; (k + 1) * chunk <= audio.length; k++) { const r = await s.run({ input: new ort.Tensor('float32', audio.slice(k * chunk, (k + 1) * chunk), [1, chunk]), state: new ort.Tensor('float32', state, [2, 1, 128]), sr: new ort.Tensor('int64', BigInt64Array.from([BigInt(rate)]), []) }); p.push(r.output.data[0]); state = new Float32Array(r.stateN.data); }
  return p; }
(async () => { const [ref, cand, dir] = process.argv.slice(2);
  const b = fs.readFileSync(dir + '/eval-audio.f32'); const audio = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
  const truth = JSON.parse(fs.readFileSync(dir + '/eval-stream.json')).truth;
  const a = await run(ref, audio, 16000), c = await run(cand, audio, 16000);
  const agree = a.filter((x, k) => (x > 0.5) === (c[k] > 0.5)).length / a.length;
  const accA = a.filter((x, k) => (x > 0.5 ? 1 : 0) === truth[k]).length / a.length, accC = c.filter((x, k) => (x > 0.5 ? 1 : 0) === truth[k]).length / a.length;
  const maxDiff = Math.max(...a.map((x, k) => Math.abs(x - c[k])));
  console.log(JSON.stringify({ chunks: a.length, speechShareFp32: +(a.filter(x => x > 0.5).length / a.length).toFixed(3), decisionAgreement: +agree.toFixed(4), fp32VsTruth: +accA.toFixed(4), int8VsTruth: +accC.toFixed(4), maxProbDiff: +maxDiff.toFixed(3) }));
})();
