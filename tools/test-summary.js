#!/usr/bin/env node
// Prints one closing line for the whole repo's tests: "tests: N passed, M failed, K skipped".
const { existsSync, readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');

const dir = join(__dirname, '..', 'out', 'test-results');
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const f of files) {
  const r = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  passed += r.passed;
  failed += r.failed + r.suitesFailed;
  skipped += r.skipped;
}
console.log(`${files.length} projects`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
