import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Args } from '@oclif/core';
import { formatRunSummary, readRunReport, type RunReport } from '@qforge/core';
import { QforgeCommand } from '../lib/base';

export default class Report extends QforgeCommand {
  static summary = 'Show a run directory (or its report.json): validated, then summarized.';
  static examples = ['<%= config.bin %> report qforge-runs/20261122T101500Z-mnist-cnn-onnxruntime-ab12', '<%= config.bin %> report run/report.json --json'];
  static args = { run: Args.string({ description: 'Run directory or report.json.', required: true }) };

  async run(): Promise<RunReport> {
    const { args } = await this.parse(Report);
    const p = resolve(args.run);
    const file = existsSync(p) && statSync(p).isDirectory() ? join(p, 'report.json') : p;
    const report = readRunReport(file);
    this.log(formatRunSummary(report).trimEnd());
    return report;
  }
}
