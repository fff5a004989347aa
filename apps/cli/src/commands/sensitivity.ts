import { Args, Flags } from '@oclif/core';
import { METRIC_KINDS, Trial, analyzeSensitivity, modelRef, recordSensitivityRun, openDataset, quantizeOptionsFor, resolveTargetProfile, withInputShapes, type CalibrationMethod, type EvalPlan, type MetricKind, type SensitivityResult, type TrialRunner } from '@qforge/core';
import { checkQueueReachable, redactArgs } from '@qforge/queue';
import { QforgeCommand } from '../lib/base';
import { backendFlag, imageFlags, imageOptions, positiveInt, targetFlag, taskFlags, taskOptions } from '../lib/flags';
import { cliRunContext } from '../lib/progress';
import { queueFlag, queuedTrialRunner } from '../lib/queue';

export default class Sensitivity extends QforgeCommand {
  static summary = 'Rank quantizable layers by how much keeping each in float recovers (and how much quantizing it alone costs).';
  static description = `Quantizes the model with each node alone in float and with each node alone quantized, and scores every variant on the evaluation data. Costs two quantize+verify runs per node.
With --queue, calibration runs here and every variant is a trial for \`qforge worker\` processes (same numbers as in-process; see docs/scale-out.md).`;
  static examples = ['<%= config.bin %> sensitivity model.onnx --data mnist:calib --eval-data mnist:test --metric top1-drop', '<%= config.bin %> sensitivity /shared/model.onnx --data /shared/calib --eval-data /shared/eval --runs-dir /shared/qforge-runs --queue redis://10.0.0.5:6379'];
  static args = { model: Args.string({ description: 'Model file.', required: true }) };
  static flags = {
    data: Flags.string({ char: 'd', description: 'Calibration dataset.', required: true }),
    'eval-data': Flags.string({ description: 'Evaluation dataset (default: the calibration data).' }),
    samples: Flags.integer({ description: 'Calibration samples.', default: 64 }),
    'eval-samples': Flags.integer({ description: 'Evaluation samples per variant.', default: 100 }),
    method: Flags.string({ description: 'Calibration method (default: from the target).', options: ['minmax', 'percentile', 'entropy', 'mse'] }),
    metric: Flags.string({ description: 'Score: snr (dB, before Softmax/Sigmoid), cosine, top1-drop (labeled data), or a task metric: iou, line-acc-drop, line-agree, top1-agree, … (docs/verification.md).', options: [...METRIC_KINDS], default: 'snr' }),
    'only-this': Flags.boolean({ description: 'Also score each node quantized alone.', default: true, allowNo: true }),
    backend: backendFlag,
    target: targetFlag,
    'runs-dir': Flags.string({ description: 'Where the run directory (report.json, for the dashboard) goes; with --queue, a folder the workers share.', default: './qforge-runs' }),
    queue: queueFlag,
    ...taskFlags,
    ...imageFlags,
  };

  async run(): Promise<SensitivityResult & { runDir: string }> {
    const startedAt = Date.now();
    const { args, flags } = await this.parse(Sensitivity);
    const model = modelRef(args.model);
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'quantize' });
    const target = resolveTargetProfile(flags.target, undefined, backend.capabilities.targets);
    // Task flags that contradict each other fail now, not after the calibration.
    const task = taskOptions(flags);
    // An unreachable queue fails now, not after the calibration.
    if (flags.queue) await checkQueueReachable(flags.queue);
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    try {
      const inputs = withInputShapes(await backend.modelInputs(model, ctx), flags['input-shape'] ?? []);
      const image = imageOptions(flags);
      const d = target.defaults;
      const table = await backend.calibrate(model, openDataset(flags.data, { inputs, image }), { method: (flags.method ?? d.method) as CalibrationMethod, samples: positiveInt('samples', flags.samples), target }, ctx);
      const base = quantizeOptionsFor(target, { output: '' });
      const evalData = flags['eval-data'] ?? flags.data;
      const evaluation: EvalPlan = { dataset: openDataset(evalData, { inputs, image }), samples: positiveInt('eval-samples', flags['eval-samples']), metric: flags.metric as MetricKind, task };
      let trial: TrialRunner;
      if (flags.queue) {
        stop();
        trial = queuedTrialRunner({ url: flags.queue, runsDir: flags['runs-dir'], plan: { backend, model, options: base, evaluation, evaluationSource: { spec: evalData, image, inputShapes: flags['input-shape'] ?? [] } }, signal: ctx.signal });
      } else trial = new Trial(backend, model, base, evaluation, ctx);
      try {
        const r = await analyzeSensitivity(trial, table, flags.metric as MetricKind, ctx, flags['only-this']);
        stop();
        const unit = flags.metric === 'snr' ? ' dB' : flags.metric.endsWith('-drop') ? ' pts (negated drop)' : flags.metric === 'rel-error' ? ' (negated)' : '';
        this.log(`baseline (all quantized): ${r.baseline.toFixed(3)}${unit}`);
        this.log(`${'node'.padEnd(36)} ${'all but this'.padStart(14)} ${'recovery'.padStart(10)} ${'only this'.padStart(12)}`);
        if (r.rankAgreement !== undefined) this.log(`rank agreement (quantize-alone damage vs float-fallback recovery, Spearman): ${r.rankAgreement.toFixed(2)}`);
        for (const l of r.layers) this.log(`${l.node.padEnd(36)} ${l.allButThis.toFixed(3).padStart(14)} ${l.recovery.toFixed(3).padStart(10)} ${Number.isNaN(l.onlyThis) ? '—'.padStart(12) : l.onlyThis.toFixed(3).padStart(12)}`);
        const run = await recordSensitivityRun(
          backend,
          { model, runsDir: flags['runs-dir'], target, data: flags.data, evalData: flags['eval-data'], samples: flags.samples, evalSamples: flags['eval-samples'], command: ['sensitivity', ...redactArgs(this.argv)].join(' '), qforgeVersion: this.config.version, startedAt, queue: trial.describe?.() },
          r,
        );
        this.log(`run directory: ${run.runDir}`);
        return { ...r, runDir: run.runDir };
      } finally {
        trial.dispose?.();
      }
    } finally {
      stop();
    }
  }
}
