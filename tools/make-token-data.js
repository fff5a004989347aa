#!/usr/bin/env node
// Token data for byte-level language models (`build-transformer-fixture.js --tokens`): UTF-8 bytes
// of real text (the repo's own docs by default) as `input_ids` with `attention_mask`, written the
// way numpy.savez writes them. calib/: one .npz per sample, sequence lengths 16–64 (symbolic dims
// differ per sample); eval.npz: one file with N samples of length L along a leading axis, the last
// quarter of each sample padded (mask 0), so masking is exercised. Deterministic.
// Usage: node tools/make-token-data.js <outDir> [calibCount=32] [evalCount=16] [textFile…]
const { mkdirSync, readFileSync, readdirSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const { encodeNpz, mulberry32 } = require('@qforge/core');

const [outArg, calibArg, evalArg, ...files] = process.argv.slice(2);
const OUT = resolve(outArg ?? 'out/data/tokens');
const CALIB = Number(calibArg ?? 32);
const EVAL = Number(evalArg ?? 16);
const docs = join(__dirname, '..', 'docs');
const sources = files.length ? files : readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => join(docs, f));
const text = Buffer.concat(sources.map((f) => readFileSync(f)));
const rnd = mulberry32(11);

const ids = (start, len) => BigInt64Array.from(text.subarray(start, start + len), (b) => BigInt(b));
const tensor = (dims, data) => ({ dtype: 'int64', dims, data });

mkdirSync(join(OUT, 'calib'), { recursive: true });
// Calibration from the first half of the text, evaluation from the second: they never overlap.
const half = Math.floor(text.length / 2);
for (let i = 0; i < CALIB; i++) {
  const len = 16 + Math.floor(rnd() * 49);
  const start = Math.floor(rnd() * (half - len));
  writeFileSync(join(OUT, 'calib', `s${String(i).padStart(3, '0')}.npz`), encodeNpz({ input_ids: tensor([1, len], ids(start, len)), attention_mask: tensor([1, len], new BigInt64Array(len).fill(1n)) }));
}
const L = 48;
const evalIds = new BigInt64Array(EVAL * L);
const evalMask = new BigInt64Array(EVAL * L).fill(1n);
for (let i = 0; i < EVAL; i++) {
  const start = half + Math.floor(rnd() * (text.length - half - L));
  evalIds.set(ids(start, L), i * L);
  for (let t = Math.floor((3 * L) / 4); t < L; t++) {
    evalIds[i * L + t] = 0n;
    evalMask[i * L + t] = 0n;
  }
}
writeFileSync(join(OUT, 'eval.npz'), encodeNpz({ input_ids: tensor([EVAL, 1, L], evalIds), attention_mask: tensor([EVAL, 1, L], evalMask) }));
console.log(`wrote ${CALIB} calibration samples (${OUT}/calib/*.npz) and ${EVAL} evaluation samples (${OUT}/eval.npz) from ${text.length} bytes of text`);
