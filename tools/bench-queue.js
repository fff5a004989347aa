#!/usr/bin/env node
// Scale-out benchmark (docs/benchmarks.md): a 16-trial sweep of the embedded MNIST model through a
// local redis-server with 1, 2 and 3 `qforge worker` processes on this machine.
// Usage: node tools/bench-queue.js [workers…]   (default 1 2 3; needs redis-server and a build)
const { spawn, spawnSync } = require('node:child_process');
const { mkdtempSync } = require('node:fs');
const { cpus, loadavg, tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { startLocalRedis } = require('@qforge/queue');

const ROOT = resolve(__dirname, '..');
const BIN = join(ROOT, 'apps', 'cli', 'bin', 'run.js');
const MODEL = join(ROOT, 'examples', 'mnist', 'mnist-cnn.onnx');
const SWEEP = ['sweep', MODEL, '--data', 'mnist:calib', '--eval-data', 'mnist:test', '--samples', '8,16,32,64', '--method', 'minmax,percentile,entropy,mse', '--eval-samples', '200', '--benchmark-runs', '20', '--json'];

async function once(workers) {
  const redis = await startLocalRedis();
  const procs = [];
  try {
    for (let i = 1; i <= workers; i++) procs.push(spawn(process.execPath, [BIN, 'worker', '--queue', redis.url, '--name', `w${i}`], { stdio: 'ignore' }));
    const runs = mkdtempSync(join(tmpdir(), 'qforge-bench-queue-'));
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [BIN, ...SWEEP, '--runs-dir', runs, '--queue', redis.url], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const wallS = (Date.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`sweep failed: ${r.stderr.slice(-2000)}`);
    const rows = JSON.parse(r.stdout).rows;
    const report = (dir) => require(join(dir, 'report.json'));
    const trialS = rows.map((x) => report(x.runDir).durationMs / 1000);
    return { workers, trials: rows.length, wallS, meanTrialS: trialS.reduce((a, b) => a + b, 0) / trialS.length, perWorker: Object.fromEntries([...new Set(rows.map((x) => x.machine.split('@')[0]))].map((w) => [w, rows.filter((x) => x.machine.startsWith(`${w}@`)).length])) };
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((res) => (p.exitCode !== null ? res() : p.once('exit', res)))));
    await redis.stop();
  }
}

(async () => {
  const counts = process.argv.slice(2).map(Number).filter(Boolean);
  console.log(`machine: ${cpus()[0]?.model} × ${cpus().length}, load average before: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  for (const n of counts.length ? counts : [1, 2, 3]) {
    const r = await once(n);
    console.log(JSON.stringify({ ...r, wallS: +r.wallS.toFixed(1), meanTrialS: +r.meanTrialS.toFixed(2), loadAfter: +loadavg()[0].toFixed(1) }));
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
