#!/usr/bin/env node
// Real-input images for the ddddocr captcha recognizer: captchas drawn by `svg-captcha` (the npm
// generator websites use: glyph outlines from its bundled font, random tilt and size, curved noise
// lines, optional colour background) and rasterized with sharp. Each file name carries its text,
// so the benchmark can decode the recognizer's CTC output and score recognition accuracy.
// Calibration, evaluation and check sets use different seeds. Deterministic: svg-captcha draws from
// Math.random, which is replaced by a seeded generator while the images are made.
// Usage: node tools/make-captcha-data.js [outDir] [countPerSet]
const { mkdirSync, readdirSync, rmSync } = require('node:fs');
const { join, resolve } = require('node:path');
const sharp = require('sharp');
const svgCaptcha = require('svg-captcha');
const { mulberry32 } = require('@qforge/core');

const OUT = resolve(process.argv[2] ?? join(__dirname, '..', 'out', 'data', 'captcha'));
const COUNT = Number(process.argv[3] ?? 32);
// Lower-case letters and digits without look-alikes (0/o, 1/l/i), as captcha sites configure it.
const IGNORE = '0o1ilIO';

async function makeSet(set, seed) {
  const dir = join(OUT, set);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const random = Math.random;
  Math.random = mulberry32(seed);
  try {
    for (let n = 0; n < COUNT; n++) {
      const r = Math.random();
      const { text, data } = svgCaptcha.create({
        size: 4 + Math.floor(Math.random() * 3),
        ignoreChars: IGNORE + 'ABCDEFGHJKLMNPQRSTUVWXYZ',
        noise: 1 + Math.floor(Math.random() * 3),
        color: r < 0.5,
        background: r < 0.25 ? '#f0e6d2' : undefined,
        width: 160,
        height: 60,
        fontSize: 56,
      });
      // Flatten onto white: the SVG has no background unless one was drawn.
      await sharp(Buffer.from(data)).flatten({ background: '#ffffff' }).png().toFile(join(dir, `${String(n).padStart(4, '0')}_${text}.png`));
    }
  } finally {
    Math.random = random;
  }
  return readdirSync(dir).length;
}

/** The text a file was drawn with, from its name (`0007_ab3d.png` → `ab3d`). */
function captchaLabel(file) {
  return /_([^_.]+)\.png$/.exec(file)?.[1];
}

module.exports = { captchaLabel };

if (require.main === module) {
  (async () => {
    const calib = await makeSet('calib', 11);
    const evalCount = await makeSet('eval', 12);
    // A third set, for checking rankings measured on the evaluation set on images they never saw.
    const check = await makeSet('check', 13);
    console.log(`${OUT}: ${calib} calibration, ${evalCount} evaluation and ${check} check captchas`);
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
