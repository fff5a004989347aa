#!/usr/bin/env node
// Packs every publishable package with `npm pack`, installs the tarballs into an empty project
// outside the repo, and runs the installed `qforge` there: proves `exports`, `files`, `bin`, peer
// dependencies and engine ranges work for a real user. Then follows docs/plugin-authoring.md
// literally in another empty folder (its files are read from the page), runs the conformance kit
// there, and installs the result with `qforge plugins install ./its.tgz`. Run after `npm run build`.
const { execFileSync, spawnSync } = require('node:child_process');
const { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, mkdirSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { dirname, join, resolve } = require('node:path');
const semver = require('semver');

const ROOT = resolve(__dirname, '..');
// Every workspace that is not private: a package added later is packed and checked too.
const PACKAGES = require(join(ROOT, 'package.json')).workspaces
  .flatMap((w) => readdirSync(join(ROOT, dirname(w))).map((d) => join(dirname(w), d)))
  .filter((p) => existsSync(join(ROOT, p, 'package.json')) && !require(join(ROOT, p, 'package.json')).private);
const out = mkdtempSync(join(tmpdir(), 'qforge-pack-'));
const project = mkdtempSync(join(tmpdir(), 'qforge-user-'));
// onnxruntime-node's postinstall would download binaries from outside the npm registry; the CPU
// ones ship in the package. An env var, because a .npmrc key makes npm warn on every command.
const ENV = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' };
const sh = (cmd, args, cwd, env = ENV) => execFileSync(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
/** Runs npm and fails on warnings our own packages or config cause (unknown config keys, engine mismatches). */
function npm(args, cwd) {
  const r = spawnSync('npm', args, { cwd, env: ENV, encoding: 'utf8' });
  const warnings = r.stderr.split('\n').filter((l) => /Unknown (project|user|env) config|EBADENGINE/.test(l));
  if (r.status !== 0) throw new Error(`npm ${args[0]} failed in ${cwd}:\n${r.stderr}`);
  if (warnings.length) throw new Error(`npm ${args[0]} warned:\n${warnings.join('\n')}`);
  return r.stdout;
}

for (const p of PACKAGES) sh('npm', ['pack', '--silent', '--pack-destination', out], join(ROOT, p));
const tarballs = readdirSync(out).filter((f) => f.endsWith('.tgz')).map((f) => join(out, f));
const tarballOf = (name) => tarballs.find((t) => t.endsWith(`/${name.replace('@', '').replace('/', '-')}-${require(join(ROOT, PACKAGES.find((p) => require(join(ROOT, p, 'package.json')).name === name), 'package.json')).version}.tgz`));
console.log(`packed ${tarballs.length} packages`);
writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'qforge-user', private: true }));
npm(['install', '--no-audit', '--no-fund', ...tarballs], project);

// Engine ranges are true: every package a @qforge package pulls in (dependencies, transitively)
// accepts the oldest Node that @qforge package claims.
function resolvePackage(from, name) {
  for (let d = from; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (d === project || dirname(d) === d) return undefined;
  }
}
let checked = 0;
for (const t of tarballs) {
  const name = JSON.parse(execFileSync('tar', ['-xzOf', t, 'package/package.json'], { encoding: 'utf8' })).name;
  const dir = resolvePackage(project, name);
  const claimed = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).engines?.node;
  if (!claimed) throw new Error(`${name} declares no engines.node`);
  const oldest = semver.minVersion(claimed).version;
  const seen = new Set();
  const queue = [dir];
  while (queue.length) {
    const d = queue.pop();
    if (seen.has(d)) continue;
    seen.add(d);
    const pj = JSON.parse(readFileSync(join(d, 'package.json'), 'utf8'));
    const range = pj.engines?.node;
    if (range && !semver.satisfies(oldest, range)) throw new Error(`${name} claims Node ${claimed}, but its dependency ${pj.name}@${pj.version} needs ${range}`);
    const optionalPeers = pj.peerDependenciesMeta ?? {};
    const deps = [...Object.keys(pj.dependencies ?? {}), ...Object.keys(pj.optionalDependencies ?? {}), ...Object.keys(pj.peerDependencies ?? {}).filter((p) => !optionalPeers[p]?.optional)];
    for (const dep of deps) {
      const found = resolvePackage(d, dep);
      if (found) queue.push(found);
    }
  }
  checked += seen.size;
}
console.log(`engine ranges hold: ${tarballs.length} packages, ${checked} package visits`);

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

// docs/plugin-authoring.md, followed literally: its ```<lang> file=<path> blocks are the files, its
// `npm i -D …` line the install (with the @qforge packages taken from the tarballs just packed).
const guide = readFileSync(join(ROOT, 'docs', 'plugin-authoring.md'), 'utf8');
const acme = mkdtempSync(join(tmpdir(), 'qforge-backend-acme-'));
const files = [...guide.matchAll(/^```\w+ file=(\S+)\n([\s\S]*?)^```$/gm)];
for (const [, path, text] of files) {
  mkdirSync(dirname(join(acme, path)), { recursive: true });
  writeFileSync(join(acme, path), text);
}
const install = /^npm i -D (.+)$/m.exec(guide);
if (!files.length || !install) throw new Error('docs/plugin-authoring.md lost its file blocks or its `npm i -D` line');
const devDeps = install[1].trim().split(/\s+/).map((p) => (p.startsWith('@qforge/') ? tarballOf(p) : p));
if (devDeps.some((d) => !d)) throw new Error(`a package the guide installs was not packed: ${install[1]}`);
npm(['install', '--save-dev', '--no-audit', '--no-fund', ...devDeps], acme);
const test = spawnSync('npm', ['test'], { cwd: acme, env: ENV, encoding: 'utf8' });
const passed = /Tests:\s+(?:\d+ skipped, )?(\d+) passed/.exec(test.stderr);
if (test.status !== 0 || !passed) throw new Error(`the guide's example fails its conformance kit:\n${test.stdout}\n${test.stderr}`);
// The negative twin: the kit must fail a backend that throws an uncoded error.
const entry = join(acme, 'src', 'index.ts');
const good = readFileSync(entry, 'utf8');
writeFileSync(entry, good.replace("throw errUnsupported(this.id, 'calibrate', 'not implemented yet');", "throw new Error('x');"));
if (spawnSync('npm', ['test'], { cwd: acme, env: ENV, encoding: 'utf8' }).status === 0) throw new Error('the conformance kit passed a backend that throws an uncoded error');
writeFileSync(entry, good);
sh('npm', ['run', 'build', '--silent'], acme);
const packed = sh('npm', ['pack', '--silent'], acme).trim().split('\n').pop();
const qforgeBin = join(project, 'node_modules', '@qforge', 'cli', 'bin', 'run.js');
const userEnv = { ...ENV, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')) };
sh('node', [qforgeBin, 'plugins', 'install', `./${packed}`], acme, userEnv);
const listed = JSON.parse(sh('node', [qforgeBin, 'backends', '--json'], project, userEnv)).backends.find((b) => b.id === 'acme');
if (!listed?.available) throw new Error('the guide\'s backend is not listed as available after `qforge plugins install`');
const demoModel = join(project, 'node_modules', '@qforge', 'cli', 'assets', 'mnist', 'mnist-cnn.onnx');
const info = JSON.parse(sh('node', [qforgeBin, 'inspect', demoModel, '--backend', 'acme', '--json'], project, userEnv));
console.log(`plugin guide: ${files.length} files, kit ${passed[1]} passed (and fails a broken copy), installed from ./${packed}, inspects ${info.inputs.length} input(s)`);
console.log('pack smoke test: ok');
