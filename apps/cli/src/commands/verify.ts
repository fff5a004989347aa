import { Args, Flags } from '@oclif/core';
import { DEFAULT_TASK_THRESHOLDS, describeTaskMetric, modelRef, openDataset, withInputShapes, type VerifyResult } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { RANGES, backendFlag, imageFlags, imageOptions, numberIn, positiveInt, taskFlags, taskOptions } from '../lib/flags';
import { cliRunContext } from '../lib/progress';

export default class Verify extends QforgeCommand {
  static summary = 'Compare a candidate (int8) model with its reference on a dataset. Exit 0 pass, 1 fail, 2 error.';
  static description = 'Each output is judged by the metric its meaning calls for (class scores: top-1; maps: IoU; sequences: per-position or CTC-decoded lines; embeddings: relative error), detected from its shape and producer; see docs/verification.md.';
  static examples = [
    '<%= config.bin %> verify model.onnx model.int8.onnx --data mnist:test --max-acc-drop 0.5',
    '<%= config.bin %> verify rec.onnx rec.int8.onnx --data lines/ --image-size 320x48 --resize pad --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --charset ppocr_keys_v1.txt',
    '<%= config.bin %> verify det.onnx det.int8.onnx --data pages/ --image-size 640x640 --min-iou 0.95',
  ];
  static args = {
    reference: Args.string({ description: 'Reference (fp32) model.', required: true }),
    candidate: Args.string({ description: 'Candidate (quantized) model.', required: true }),
  };
  static flags = {
    data: Flags.string({ char: 'd', description: 'Evaluation dataset.', required: true }),
    samples: Flags.integer({ description: 'Samples to compare.', default: 500 }),
    'min-snr': Flags.string({ description: 'Also require this SNR (dB) of every output (not judged unless given).' }),
    'min-iou': Flags.string({ description: 'Minimum IoU of binarized map outputs.', default: String(DEFAULT_TASK_THRESHOLDS.minIou) }),
    'max-line-acc-drop': Flags.string({ description: 'Maximum line accuracy drop in points (CTC sequences with string labels).', default: '3' }),
    'min-cosine': Flags.string({ description: 'Minimum cosine similarity per output.' }),
    'max-acc-drop': Flags.string({ description: 'Maximum top-1 accuracy drop in points (labeled data).', default: '1' }),
    'max-ppl-increase': Flags.string({ description: 'Maximum perplexity increase over fp32 in percent (language-model outputs on token data).', default: '1' }),
    'per-layer': Flags.boolean({ description: 'Also measure the error at each quantized tensor.', default: true, allowNo: true }),
    backend: backendFlag,
    ...taskFlags,
    ...imageFlags,
  };

  async run(): Promise<VerifyResult> {
    const { args, flags } = await this.parse(Verify);
    const thresholds = {
      ...(flags['min-snr'] !== undefined ? { minSnrDb: numberIn('min-snr', flags['min-snr'], RANGES.snrDb) } : {}),
      minIou: numberIn('min-iou', flags['min-iou'], RANGES.share),
      maxLineAccuracyDropPoints: numberIn('max-line-acc-drop', flags['max-line-acc-drop'], RANGES.accDropPoints),
      maxAccuracyDropPoints: numberIn('max-acc-drop', flags['max-acc-drop'], RANGES.accDropPoints),
      maxPerplexityIncreasePercent: numberIn('max-ppl-increase', flags['max-ppl-increase'], RANGES.percentIncrease),
      ...(flags['min-cosine'] !== undefined ? { minCosine: numberIn('min-cosine', flags['min-cosine'], RANGES.cosine) } : {}),
    };
    const task = taskOptions(flags);
    const reference = modelRef(args.reference);
    const candidate = modelRef(args.candidate);
    const backend = await this.registry.resolve({ backend: flags.backend, format: reference.format, verb: 'verify' });
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    const dataset = openDataset(flags.data, { inputs: withInputShapes(await backend.modelInputs(reference, ctx), flags['input-shape'] ?? []), image: imageOptions(flags) });
    const r = await backend.verify(reference, candidate, dataset, { samples: positiveInt('samples', flags.samples), thresholds, perLayer: flags['per-layer'], ...task }, ctx).finally(stop);
    this.logDebug(`verified on ${r.samples} sample(s) of ${dataset.description.source}: ${Object.entries(dataset.description.inputShapes ?? {}).map(([name, shapes]) => `${name} ${shapes.join(' | ')}`).join('; ') || 'shapes not recorded'}`);
    // The task metric first: what the output means and whether it still says the same.
    for (const o of r.outputs) if (o.task) this.log(`${o.output} (${o.task.kind}; ${o.task.detectedFrom}): ${describeTaskMetric(o.task)}`);
    for (const o of r.outputs) {
      this.log(`${o.output}: SNR ${o.snrDb.toFixed(2)} dB, cosine ${o.cosine.toFixed(6)}, max|err| ${o.maxAbsError.toPrecision(3)}, mean|err| ${o.meanAbsError.toPrecision(3)}${o.top1Agreement !== undefined ? `, top-1 agreement ${(o.top1Agreement * 100).toFixed(2)}%` : ''}`);
    }
    if (r.accuracy) this.log(`accuracy: reference ${(r.accuracy.reference * 100).toFixed(2)}%, candidate ${(r.accuracy.candidate * 100).toFixed(2)}% (drop ${r.accuracy.dropPoints.toFixed(2)} points) on ${r.samples} samples`);
    if (r.layers?.length) {
      this.log('worst layers (candidates to keep in float):');
      for (const l of r.layers.slice(0, 5)) this.log(`  ${l.tensor.padEnd(32)} SNR ${l.snrDb.toFixed(2)} dB  cosine ${l.cosine.toFixed(5)}`);
    }
    this.log(r.passed ? `PASS${r.decidedBy?.length ? `: ${r.decidedBy.join('; ')}` : ''}` : `FAIL: ${r.failures.join('; ')}`);
    if (!r.passed) {
      if (this.jsonEnabled()) this.logJson(r);
      this.exit(1);
    }
    return r;
  }
}
