import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Flags } from '@oclif/core';
import { errModelNotFound, modelRef, resolveTargetProfile } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { cliRunContext } from '../lib/progress';
import { runAndRender } from '../lib/run';
import type { QuantizeOutput } from './quantize';

/** The embedded example: in the repo, or shipped inside the CLI package. */
export function exampleModelPath(): string {
  const candidates = [join(__dirname, '..', '..', 'assets', 'mnist', 'mnist-cnn.onnx'), join(__dirname, '..', '..', '..', '..', 'examples', 'mnist', 'mnist-cnn.onnx')];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw errModelNotFound(candidates[0]);
  return found;
}

export default class Demo extends QforgeCommand {
  static summary = 'Quantize the embedded MNIST CNN end to end and print the fp32 vs int8 comparison.';
  static description = 'Calibrates on digits 8000–8999, verifies on digits 9000–9999 (never used for training or calibration), benchmarks at one thread. Everything is measured on this machine.';
  static examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --json'];
  static flags = {
    'runs-dir': Flags.string({ description: 'Where the run directory goes.', default: './qforge-runs' }),
    backend: Flags.string({ description: 'Backend to run the demo on.', default: 'onnxruntime' }),
  };

  async run(): Promise<QuantizeOutput> {
    const { flags } = await this.parse(Demo);
    const model = modelRef(exampleModelPath());
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'quantize' });
    const { ctx, stop } = cliRunContext();
    this.log(`qforge demo: ${model.path}\n`);
    const result = await runAndRender(
      backend,
      {
        model,
        runsDir: resolve(flags['runs-dir']),
        target: resolveTargetProfile('auto'),
        data: 'mnist:calib',
        samples: 256,
        evalData: 'mnist:test',
        evalSamples: 1000,
        thresholds: { minSnrDb: 20, maxAccuracyDropPoints: 0.5 },
        benchmarkRuns: 300,
        command: 'demo',
        qforgeVersion: this.config.version,
      },
      ctx,
    ).finally(stop);
    this.log(result.summary.trimEnd());
    this.log(`\nrun directory: ${result.runDir}`);
    const out = { runDir: result.runDir, report: result.report };
    if (result.report.verdict === 'fail') {
      if (this.jsonEnabled()) this.logJson(out);
      this.exit(1);
    }
    return out;
  }
}
