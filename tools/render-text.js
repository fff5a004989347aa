#!/usr/bin/env node
// Renders held-out OCR data with known text (Debian fonts, drawn by sharp from SVG), so every
// sample has a label: text lines for the recognizer (labels.txt), upright and upside-down strips
// for the orientation classifier (labels.json: 0 = 0°, 1 = 180°, PaddleOCR's order), and pages
// for the detector (boxes.json: each line's box). Calibration and evaluation use different words,
// fonts and seeds. Deterministic: same files every run.
// Usage: node tools/render-text.js [outDir] [countPerSet] [det,rec,cls] [draw]
// `draw` (default 0) picks other random draws: two folders rendered with the same draw and kinds hold
// the same first samples, so a held-out set needs its own draw.
const { mkdirSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const sharp = require('sharp');
const { mulberry32 } = require('@qforge/core');

const OUT = resolve(process.argv[2] ?? join(__dirname, '..', 'out', 'data', 'text'));
const COUNT = Number(process.argv[3] ?? 24);
const KINDS = new Set((process.argv[4] ?? 'det,rec,cls').split(','));
const DRAW = Number(process.argv[5] ?? 0);
if (!Number.isInteger(DRAW) || DRAW < 0) throw new Error(`draw must be an integer ≥ 0, got ${process.argv[5]}`);

// Words whose characters are all in PaddleOCR's ppocr_keys_v1.txt; split so the sets never share one.
const WORDS = {
  calib: ['model', 'quantize', 'river', 'garden', 'Monday', 'yellow', 'window', 'paper', 'orange', 'station', 'planet', 'summer', 'coffee', 'market', 'silver', 'bridge', 'winter', 'forest', 'pencil', 'Berlin', 'Paris', 'engine'],
  eval: ['number', 'letter', 'castle', 'friday', 'purple', 'mirror', 'ticket', 'island', 'rabbit', 'candle', 'jacket', 'London', 'Oslo', 'harbor', 'violin', 'tomato', 'rocket', 'doctor', 'spring', 'marble', 'button', 'Vienna'],
};
const FONTS = { calib: ['DejaVu Sans', 'Liberation Serif', 'DejaVu Sans Mono'], eval: ['Liberation Sans', 'DejaVu Serif', 'Liberation Mono'] };

function escapeXml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A phrase of 1–3 words, sometimes with a number. */
function phrase(rnd, words) {
  const n = 1 + Math.floor(rnd() * 3);
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(words[Math.floor(rnd() * words.length)]);
  if (rnd() < 0.4) parts.push(String(Math.floor(rnd() * 1000)));
  return parts.join(' ');
}

/** Approximate advance width of text at a font size (DejaVu/Liberation average ≈ 0.6 em). */
const textWidth = (text, size) => Math.ceil(text.length * size * 0.62);

function svg(width, height, items) {
  const body = items.map((t) => `<text x="${t.x}" y="${t.y}" font-family="${t.font}" font-size="${t.size}" fill="#111">${escapeXml(t.text)}</text>`).join('');
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#fbfaf6"/>${body}</svg>`);
}

async function main() {
  for (const [set, seed] of [['calib', 11 + 1000 * DRAW], ['eval', 29 + 1000 * DRAW]]) {
    const rnd = mulberry32(seed);
    const words = WORDS[set];
    const fonts = FONTS[set];
    const dirs = { det: join(OUT, 'det', set), rec: join(OUT, 'rec', set), cls: join(OUT, 'cls', set) };
    for (const k of KINDS) mkdirSync(dirs[k], { recursive: true });
    const recLabels = [];
    const clsLabels = [];
    const boxes = [];
    for (let n = 0; n < COUNT; n++) {
      const name = `${String(n).padStart(3, '0')}.png`;
      const font = fonts[n % fonts.length];
      if (KINDS.has('rec') || KINDS.has('cls')) {
        // One line, drawn at 32 px in a 48 px strip; the width follows the text (pad-resized by qforge).
        const text = phrase(rnd, words);
        const size = 30 + Math.floor(rnd() * 5);
        const width = Math.min(320 * 3, textWidth(text, size) + 16);
        const line = svg(width, 48, [{ x: 8, y: 35, font, size, text }]);
        if (KINDS.has('rec')) {
          await sharp(line).removeAlpha().png().toFile(join(dirs.rec, name));
          recLabels.push(text);
        }
        if (KINDS.has('cls')) {
          // Half the strips upside down: the classifier's two classes, 0° and 180°.
          const flipped = n % 2 === 1;
          let img = sharp(line).removeAlpha();
          if (flipped) img = img.rotate(180);
          await img.png().toFile(join(dirs.cls, name));
          clsLabels.push(flipped ? 1 : 0);
        }
      }
      if (KINDS.has('det')) {
        // A 640×640 page with 4–7 lines at random left offsets and sizes.
        const W = 640;
        const items = [];
        let y = 40 + Math.floor(rnd() * 30);
        const lines = 4 + Math.floor(rnd() * 4);
        for (let i = 0; i < lines && y < W - 20; i++) {
          const size = 22 + Math.floor(rnd() * 18);
          const text = phrase(rnd, words);
          const x = 10 + Math.floor(rnd() * 200);
          items.push({ x, y: y + size, font: fonts[(n + i) % fonts.length], size, text, box: [x, y + Math.round(size * 0.15), Math.min(W, x + textWidth(text, size)), y + Math.round(size * 1.2)] });
          y += Math.round(size * 1.6 + rnd() * 40);
        }
        await sharp(svg(W, W, items)).removeAlpha().png().toFile(join(dirs.det, name));
        boxes.push({ file: name, lines: items.map((t) => ({ text: t.text, box: t.box })) });
      }
    }
    if (KINDS.has('rec')) writeFileSync(join(dirs.rec, 'labels.txt'), recLabels.join('\n') + '\n');
    if (KINDS.has('cls')) writeFileSync(join(dirs.cls, 'labels.json'), JSON.stringify(clsLabels) + '\n');
    if (KINDS.has('det')) writeFileSync(join(dirs.det, 'boxes.json'), JSON.stringify(boxes, null, 1) + '\n');
  }
  console.log(`wrote ${COUNT} samples per set (${[...KINDS].join(', ')}) to ${OUT}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
