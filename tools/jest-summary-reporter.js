// Jest reporter: records each project's counts in out/test-results/, so one closing line can sum them.
const { mkdirSync, writeFileSync } = require('node:fs');
const { join, basename } = require('node:path');

class SummaryReporter {
  constructor(globalConfig) {
    this.rootDir = globalConfig.rootDir;
  }
  onRunComplete(_contexts, results) {
    const dir = join(__dirname, '..', 'out', 'test-results');
    mkdirSync(dir, { recursive: true });
    const name = basename(this.rootDir);
    writeFileSync(
      join(dir, `${name}.json`),
      JSON.stringify({ project: name, passed: results.numPassedTests, failed: results.numFailedTests, skipped: results.numPendingTests + results.numTodoTests, suitesFailed: results.numFailedTestSuites + results.numRuntimeErrorTestSuites }),
    );
  }
}
module.exports = SummaryReporter;
