#!/usr/bin/env node
// Packs every publishable package with `npm pack`, installs the tarballs into an empty project
// outside the repo, and runs the installed `qforge` there: proves `exports`, `files`, `bin` and
// peer dependencies work for a real user. Run after `npm run build`.
const { execFileSync } = require('node:child_process');
const { mkdtempSync, readdirSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');

const ROOT = resolve(__dirname, '..');
const PACKAGES = ['packages/core', 'packages/onnx', 'packages/tflite', 'packages/testkit', 'plugins/backend-onnxruntime', 'plugins/backend-tfjs', 'plugins/backend-akida', 'plugins/backend-tvm', 'apps/dashboard', 'apps/cli'];
const out = mkdtempSync(join(tmpdir(), 'qforge-pack-'));
const project = mkdtempSync(join(tmpdir(), 'qforge-user-'));
const sh = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

for (const p of PACKAGES) sh('npm', ['pack', '--silent', '--pack-destination', out], join(ROOT, p));
const tarballs = readdirSync(out).filter((f) => f.endsWith('.tgz')).map((f) => join(out, f));
console.log(`packed ${tarballs.length} packages`);
writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'qforge-user', private: true }));
writeFileSync(join(project, '.npmrc'), 'onnxruntime-node-install=skip\n');
sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], project);
const backends = JSON.parse(sh('npx', ['--no-install', 'qforge', 'backends', '--json'], project));
const ids = backends.backends.map((b) => `${b.id}:${b.available ? 'available' : 'unavailable'}`);
console.log(`installed qforge lists ${ids.join(', ')}`);
if (!backends.backends.find((b) => b.id === 'onnxruntime' && b.available)) throw new Error('onnxruntime backend not available from the installed packages');
const demo = JSON.parse(sh('npx', ['--no-install', 'qforge', 'demo', '--json'], project));
console.log(`installed qforge demo: verdict ${demo.report.verdict}, size ratio ${demo.report.sizes.ratio.toFixed(3)}`);
if (demo.report.verdict !== 'pass') throw new Error('demo did not pass from the installed packages');
// TensorFlow.js → .tflite from the installed packages, checked in the TFLite interpreter there.
const tfjsModel = join(project, 'node_modules', '@qforge', 'cli', 'assets', 'mnist', 'tfjs', 'model.json');
const tfl = JSON.parse(sh('npx', ['--no-install', 'qforge', 'quantize', tfjsModel, '--data', 'mnist:calib', '--samples', '32', '--eval-data', 'mnist:test', '--eval-samples', '200', '--benchmark-runs', '10', '-o', join(project, 'mnist.tflite'), '--json'], project)).report;
console.log(`installed qforge → .tflite: verdict ${tfl.verdict}, size ratio ${tfl.sizes.ratio.toFixed(3)}, ${tfl.benchmark.runtime}`);
if (tfl.verdict !== 'pass' || tfl.output.format !== 'tflite') throw new Error('tflite conversion did not pass from the installed packages');
sh('node', ['-e', "const c=require('@qforge/core'); const t=require('@qforge/testkit'); const f=require('@qforge/tflite'); if(typeof c.runQuantize!=='function'||typeof t.runBackendConformance!=='function'||typeof f.writeTflite!=='function') process.exit(1)"], project);
console.log('pack smoke test: ok');
