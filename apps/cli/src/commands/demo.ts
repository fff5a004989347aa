import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Flags } from '@oclif/core';
import { errModelNotFound, modelRef, resolveTargetProfile, type ModelFormat } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { cliRunContext } from '../lib/progress';
import { runAndRender } from '../lib/run';
import type { QuantizeOutput } from './quantize';

/**
 * The demo's model, one file per format with identical weights (tools/build-mnist-demo.js): an
 * MNIST MLP whose time goes into weight-heavy matrix products, so int8 is faster on a CPU, not
 * only smaller. (mnist-cnn.onnx, the other embedded example, is too small for that: quantize and
 * dequantize steps cost as much as its int8 kernels save.)
 */
export const DEMO_MODELS: readonly { format: ModelFormat; file: string }[] = [
  { format: 'onnx', file: 'mnist-mlp.onnx' },
  { format: 'tfjs-layers', file: join('mnist-mlp-tfjs', 'model.json') },
];

/** An embedded example file: in the repo, or shipped inside the CLI package. */
export function exampleModelPath(file = DEMO_MODELS[0].file): string {
  const candidates = [join(__dirname, '..', '..', 'assets', 'mnist', file), join(__dirname, '..', '..', '..', '..', 'examples', 'mnist', file)];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw errModelNotFound(candidates[0]);
  return found;
}

export default class Demo extends QforgeCommand {
  static summary = 'Quantize the embedded MNIST model end to end and print the fp32 vs int8 comparison.';
  static description =
    'The model is a 784→512→512→10 MLP trained on digits 0–7999 (tools/build-mnist-demo.js), large enough for int8 kernels to pay off on a CPU. Calibrates on digits 8000–8999, verifies on digits 9000–9999 (never used for training or calibration), benchmarks int8 against fp32 at one thread. Everything is measured on this machine. The onnxruntime backend quantizes mnist-mlp.onnx; a backend that reads TensorFlow.js models (--backend tfjs) quantizes its twin with the same weights.';
  static examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --json'];
  static flags = {
    'runs-dir': Flags.string({ description: 'Where the run directory goes.', default: './qforge-runs' }),
    backend: Flags.string({ description: 'Backend to run the demo on.', default: 'onnxruntime' }),
  };

  async run(): Promise<QuantizeOutput> {
    const { flags } = await this.parse(Demo);
    // The first embedded format the chosen backend reads (onnx when it reads none: resolve says why).
    const reads = flags.backend === 'auto' ? undefined : this.registry.get(flags.backend).capabilities.inputFormats;
    const example = DEMO_MODELS.find((m) => !reads || reads.includes(m.format)) ?? DEMO_MODELS[0];
    const model = modelRef(exampleModelPath(example.file));
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'quantize' });
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    this.log(`qforge demo: ${model.path}\n`);
    const result = await runAndRender(
      backend,
      {
        model,
        runsDir: resolve(flags['runs-dir']),
        target: resolveTargetProfile('auto', undefined, backend.capabilities.targets),
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
