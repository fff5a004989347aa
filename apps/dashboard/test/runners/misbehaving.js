// A run module for child-run tests: the model's file name says how its run ends (plain JS: the child runs without a TypeScript loader).
const { mkdirSync, writeFileSync } = require('node:fs');
const { basename, join } = require('node:path');
const { errDatasetEmpty, partialRunDirName } = require('@qforge/core');
const { serveRunInChild } = require('../../dist/child-run');

serveRunInChild(async (request, ctx, init) => {
  const how = basename(request.model, '.onnx');
  ctx.progress({ phase: 'calibrate', current: 1, total: 2 });
  // A work folder, as a real run has one when it dies: the server must remove it.
  mkdirSync(join(init.runsDir, partialRunDirName(`child-${how}`)), { recursive: true });
  writeFileSync(join(init.pidDir, `${how}.pid`), String(process.pid));
  switch (how) {
    case 'exits':
      process.exit(3);
    case 'throws-later':
      setTimeout(() => {
        throw new Error('kaboom from a callback nobody awaits');
      }, 10);
      return new Promise(() => {});
    case 'segfaults':
      process.kill(process.pid, 'SIGSEGV');
      return new Promise(() => {});
    case 'hangs':
      // Ignores SIGTERM: the server's only way out is SIGKILL after the grace time.
      process.removeAllListeners('SIGTERM');
      process.on('SIGTERM', () => {});
      return new Promise(() => {});
    case 'fails':
      // A run that fails the ordinary way: a coded error, and the failure report's run id.
      throw Object.assign(errDatasetEmpty('calib/'), { report: { runId: 'failed-run-id' } });
    default:
      return { runId: `run-of-${how}` };
  }
});
