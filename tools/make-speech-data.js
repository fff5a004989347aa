#!/usr/bin/env node
// Real inputs for a voice-activity detector: sentences spoken by Debian's espeak-ng, resampled to
// 16 kHz (and 8 kHz: Silero runs a separate network per rate) mono float by sox, laid out between stretches of quiet pink noise, so every 512-sample
// chunk has a known truth (speech or not). The recurrent state each chunk sees is the one the fp32
// model carries when it runs over the stream in order — the state the model meets in use.
//   calib/cNNNN.npz   one chunk per file: input [1,512] (16 kHz; [1,256] at 8 kHz), state [2,1,128],
//                     sr (int64 scalar); a quarter of them at 8 kHz
//   eval.npz          held-out 16 kHz chunks (other sentences, another voice), leading sample axis
//   eval-8k.npz       the held-out stream at 8 kHz, the same way
//   eval-stream.json  the held-out stream: audio chunks' truth, for a stateful check of decisions
//   eval-audio.f32    the held-out audio (raw float32, 16 kHz) for running models in order
// Needs espeak-ng and sox (apt-get install espeak-ng sox). Deterministic for one espeak-ng build.
// Usage: node tools/make-speech-data.js <model.onnx> <outDir> [calibChunks=256]
const { execFileSync } = require('node:child_process');
const { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const ort = require('onnxruntime-node');
const { encodeNpz } = require('@qforge/core');

const [modelArg, outArg, calibArg] = process.argv.slice(2);
if (!modelArg || !outArg) {
  console.error('usage: node tools/make-speech-data.js <model.onnx> <outDir> [calibChunks]');
  process.exit(2);
}
const OUT = resolve(outArg);
const CALIB_CHUNKS = Number(calibArg ?? 256);
const RATE = 16000;
const CHUNK = 512;
const chunkFor = (rate) => (rate === 8000 ? 256 : 512);

const CALIB_SENTENCES = [
  'The quick brown fox jumps over the lazy dog.',
  'Quantization maps real numbers to a small set of integers.',
  'Please leave a message after the tone and we will call you back.',
  'Seven silver swans swam silently across the lake at dawn.',
  'Turn left at the next corner and keep going for two miles.',
];
const EVAL_SENTENCES = [
  'A voice activity detector tells speech from silence.',
  'Bright sunshine returned to the valley after three days of rain.',
  'Every measurement should be repeatable by someone else.',
];

const work = mkdtempSync(join(tmpdir(), 'qforge-speech-'));
function speak(text, voice, i, rate) {
  const wav = join(work, `s${i}.wav`);
  const raw = join(work, `s${i}.f32`);
  execFileSync('espeak-ng', ['-v', voice, '-s', '150', '-w', wav, text]);
  execFileSync('sox', [wav, '-r', String(rate), '-c', '1', '-e', 'floating-point', '-b', '32', '-t', 'raw', raw]);
  const b = readFileSync(raw);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}
function noise(seconds, i, rate) {
  const raw = join(work, `n${i}.f32`);
  execFileSync('sox', ['-n', '-r', String(rate), '-c', '1', '-e', 'floating-point', '-b', '32', '-t', 'raw', raw, 'synth', String(seconds), 'pinknoise', 'vol', '0.01']);
  const b = readFileSync(raw);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

/** Noise, sentence, noise, …: the audio and per-sample truth (1 inside a sentence's voiced span). */
function stream(sentences, voice, seed, rate = RATE) {
  const parts = [];
  const truth = [];
  sentences.forEach((text, i) => {
    const gap = noise(0.6 + 0.2 * ((i + seed) % 3), `${seed}-${i}-${rate}`, rate);
    const speech = speak(text, voice, `${seed}-${i}-${rate}`, rate);
    parts.push(gap, speech);
    truth.push(new Uint8Array(gap.length), Uint8Array.from(speech, (v) => (Math.abs(v) > 0.02 ? 1 : 0)));
  });
  const tail = noise(0.6, `${seed}-tail-${rate}`, rate);
  parts.push(tail);
  truth.push(new Uint8Array(tail.length));
  const audio = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  const labels = new Uint8Array(audio.length);
  let o = 0;
  parts.forEach((p, i) => {
    audio.set(p, o);
    labels.set(truth[i], o);
    o += p.length;
  });
  return { audio, labels, rate };
}

/** Runs the fp32 model over the stream in order; returns each chunk with the state it saw. */
async function chunksWithState(session, audio, rate = RATE) {
  const chunk = chunkFor(rate);
  const n = Math.floor(audio.length / chunk);
  let state = new Float32Array(2 * 128);
  const out = [];
  const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(rate)]), []);
  for (let k = 0; k < n; k++) {
    const input = audio.slice(k * chunk, (k + 1) * chunk);
    const r = await session.run({ input: new ort.Tensor('float32', input, [1, chunk]), state: new ort.Tensor('float32', state, [2, 1, 128]), sr });
    out.push({ input, state, prob: r.output.data[0], rate });
    state = new Float32Array(r.stateN.data);
  }
  return out;
}

(async () => {
  const session = await ort.InferenceSession.create(resolve(modelArg));
  mkdirSync(join(OUT, 'calib'), { recursive: true });
  const calib = stream(CALIB_SENTENCES, 'en', 1);
  const held = stream(EVAL_SENTENCES, 'en-us', 2);
  const calib8k = stream(CALIB_SENTENCES, 'en', 1, 8000);
  // Spread the calibration picks over the whole stream (speech and noise alike); every fourth
  // file is an 8 kHz chunk, so both of the model's networks are calibrated.
  const picks = (chunks, want) => {
    const step = Math.max(1, Math.floor(chunks.length / want));
    return chunks.filter((_, k) => k % step === 0).slice(0, want);
  };
  const chosen16 = picks(await chunksWithState(session, calib.audio), CALIB_CHUNKS - Math.floor(CALIB_CHUNKS / 4));
  const chosen8 = picks(await chunksWithState(session, calib8k.audio, 8000), Math.floor(CALIB_CHUNKS / 4));
  const mixed = chosen16.flatMap((c, k) => (k % 3 === 2 && chosen8[Math.floor(k / 3)] ? [c, chosen8[Math.floor(k / 3)]] : [c]));
  let written = 0;
  for (const c of mixed) {
    writeFileSync(
      join(OUT, 'calib', `c${String(written++).padStart(4, '0')}.npz`),
      encodeNpz({ input: { dtype: 'float32', dims: [1, c.input.length], data: c.input }, state: { dtype: 'float32', dims: [2, 1, 128], data: c.state }, sr: { dtype: 'int64', dims: [], data: BigInt64Array.from([BigInt(c.rate)]) } }),
    );
  }
  const evalChunks = await chunksWithState(session, held.audio);
  const N = evalChunks.length;
  const inputs = new Float32Array(N * CHUNK);
  const states = new Float32Array(N * 256);
  evalChunks.forEach((c, k) => {
    inputs.set(c.input, k * CHUNK);
    states.set(c.state, k * 256);
  });
  writeFileSync(
    join(OUT, 'eval.npz'),
    encodeNpz({ input: { dtype: 'float32', dims: [N, 1, CHUNK], data: inputs }, state: { dtype: 'float32', dims: [N, 2, 1, 128], data: states }, sr: { dtype: 'int64', dims: [N], data: new BigInt64Array(N).fill(BigInt(RATE)) } }),
  );
  const held8k = stream(EVAL_SENTENCES, 'en-us', 2, 8000);
  const eval8k = await chunksWithState(session, held8k.audio, 8000);
  writeFileSync(
    join(OUT, 'eval-8k.npz'),
    encodeNpz({
      input: { dtype: 'float32', dims: [eval8k.length, 1, 256], data: Float32Array.from(eval8k.flatMap((c) => Array.from(c.input))) },
      state: { dtype: 'float32', dims: [eval8k.length, 2, 1, 128], data: Float32Array.from(eval8k.flatMap((c) => Array.from(c.state))) },
      sr: { dtype: 'int64', dims: [eval8k.length], data: new BigInt64Array(eval8k.length).fill(8000n) },
    }),
  );
  const truth = evalChunks.map((_, k) => (held.labels.subarray(k * CHUNK, (k + 1) * CHUNK).reduce((a, b) => a + b, 0) > CHUNK / 4 ? 1 : 0));
  writeFileSync(join(OUT, 'eval-audio.f32'), Buffer.from(held.audio.buffer, 0, N * CHUNK * 4));
  writeFileSync(join(OUT, 'eval-stream.json'), JSON.stringify({ rate: RATE, chunk: CHUNK, chunks: N, truth, fp32Prob: evalChunks.map((c) => +c.prob.toFixed(5)) }));
  const fp32Acc = evalChunks.filter((c, k) => (c.prob > 0.5 ? 1 : 0) === truth[k]).length / N;
  rmSync(work, { recursive: true, force: true });
  console.log(`wrote ${written} calibration chunks and ${N} held-out chunks under ${OUT}; fp32 decisions match the synthesis truth on ${(fp32Acc * 100).toFixed(1)}% of held-out chunks`);
})().catch((e) => {
  rmSync(work, { recursive: true, force: true });
  console.error(e.message);
  process.exit(1);
});
