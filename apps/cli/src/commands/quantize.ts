import { Args, Flags } from '@oclif/core';
import { DEFAULT_CALIBRATION_SAMPLES, DEFAULT_TASK_THRESHOLDS, errInvalidOption, modelRef, resolveTargetProfile, type CalibrationMethod, type QuantFormat, type QuantMode, type QuantType, type QuantizeRunOptions, type RunReport } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { RANGES, backendFlag, imageFlags, imageOptions, list, numberIn, positiveInt, targetFlag, taskFlags, taskOptions } from '../lib/flags';
import { checkQueueReachable, redactArgs } from '@qforge/queue';
import { cliRunContext } from '../lib/progress';
import { queuedTrialRunner } from '../lib/queue';
import { runAndRender } from '../lib/run';
import { formatPresetTable, presetInput, runTransformersPreset, type PresetOutput } from '../lib/transformers-preset';

export interface QuantizeOutput {
  runDir: string;
  report: RunReport;
}

export default class Quantize extends QforgeCommand {
  static summary = 'Quantize a model to int8: calibrate → quantize → verify → benchmark, written to a run directory.';
  static description = `Writes <runs-dir>/<time>-<model>-<backend>/ with report.json (the receipt: hashes, options, versions, results), summary.txt, calibration.json and the int8 model; -o also copies the model there.
Exit codes: 0 when verification passes (or is skipped), 1 when it fails its thresholds, 2 on errors.`;
  static examples = [
    '<%= config.bin %> quantize model.onnx --data ./calib-images -o model.int8.onnx',
    '<%= config.bin %> quantize model.onnx --data mnist:calib --eval-data mnist:test --method entropy',
    '<%= config.bin %> quantize bert.onnx --mode dynamic -o bert.int8.onnx',
    '<%= config.bin %> quantize decoder.onnx --mode weight-only --weight-bits 4 --algorithm gptq --data ./tokens --keep-float last -o model_q4.onnx',
    '<%= config.bin %> quantize decoder.onnx --mode fp16 -o model_fp16.onnx',
    '<%= config.bin %> quantize ./my-model --preset transformers.js --data ./tokens -o ./my-model/onnx',
    '<%= config.bin %> quantize model.json --backend tfjs --data ./photos -o model.tflite',
    '<%= config.bin %> quantize model.json --mode weight-only -o web/model.int8.json',
    '<%= config.bin %> quantize model.json --backend tfjs --qat --data mnist:0-2000 --eval-data mnist:test --epochs 1 -o model.tflite',
  ];
  static args = { model: Args.string({ description: 'Model file (.onnx, model.json); with --preset transformers.js also a model folder (onnx/model.onnx).', required: true }) };
  static flags = {
    output: Flags.string({ char: 'o', description: 'Also write the quantized model here (with --preset: the folder the variants go to).' }),
    preset: Flags.string({ description: 'Write every variant a runtime loads, each verified: transformers.js → model_fp16.onnx, model_quantized.onnx, model_int8.onnx, model_q4.onnx in -o.', options: ['transformers.js'] }),
    backend: backendFlag,
    target: targetFlag,
    mode: Flags.string({ description: 'static (calibrated activations), dynamic (activations quantized at run time; ONNX), weight-only (integer weights, float compute: ONNX MatMulNBits, TensorFlow.js int8) or fp16 (float16 weights and compute; ONNX).', options: ['static', 'dynamic', 'weight-only', 'fp16'], default: 'static' }),
    'weight-bits': Flags.integer({ description: '--mode weight-only (ONNX): bits per weight, 4 or 8.', default: 4 }),
    'block-size': Flags.integer({ description: '--mode weight-only (ONNX): weights per block with one scale (16, 32, 64, 128 or 256).', default: 32 }),
    algorithm: Flags.string({ description: '--mode weight-only (ONNX): rtn (round to nearest) or gptq (error compensation from --data).', options: ['rtn', 'gptq'], default: 'rtn' }),
    symmetric: Flags.boolean({ description: '--mode weight-only (ONNX): symmetric blocks without zero points (default: asymmetric, with zero points).', default: false }),
    'keep-float': Flags.string({ description: '--mode weight-only (ONNX): MatMuls kept in float by position: first, last (the LM head), or first,last.' }),
    format: Flags.string({ description: 'Quantized graph format (default: from the target).', options: ['qdq', 'qoperator'] }),
    data: Flags.string({ char: 'd', description: 'Calibration dataset: folder, .npy, mnist[:split], random[:seed].' }),
    samples: Flags.integer({ description: 'Calibration samples.', default: DEFAULT_CALIBRATION_SAMPLES }),
    method: Flags.string({ description: 'Calibration range method (default: from the target).', options: ['minmax', 'percentile', 'entropy', 'mse'] }),
    percentile: Flags.string({ description: 'Percentile for --method percentile.', default: '99.999' }),
    'per-channel': Flags.boolean({ description: 'Per-channel weight scales (default: from the target).', allowNo: true }),
    'activation-type': Flags.string({ description: 'Activation integer type (default: from the target).', options: ['uint8', 'int8'] }),
    'weight-type': Flags.string({ description: 'Weight integer type (default: from the target).', options: ['int8', 'uint8'] }),
    'reduce-range': Flags.boolean({ description: '7-bit weights; on by default where int8 kernels saturate (AVX2 without VNNI).', allowNo: true }),
    'calib-table': Flags.string({ description: 'Reuse a calibration table instead of calibrating.' }),
    'exclude-nodes': Flags.string({ description: 'Comma-separated node names to keep in float.' }),
    'a16-nodes': Flags.string({ description: 'Comma-separated node names whose activations stay 16-bit (W8A16; ONNX Runtime QDQ).' }),
    fallback: Flags.string({ description: 'What --accuracy-target gives sensitive nodes: float, or a16 (16-bit activations).', options: ['float', 'a16'], default: 'float' }),
    'op-types': Flags.string({ description: 'Comma-separated operator types to quantize (default: all the backend supports).' }),
    'eval-data': Flags.string({ description: 'Held-out dataset for verification (default: the calibration data).' }),
    'eval-samples': Flags.integer({ description: 'Samples to verify on.', default: 200 }),
    'min-snr': Flags.string({ description: 'Also require this output SNR in dB (not judged unless given; each output is judged by its task metric).' }),
    'min-iou': Flags.string({ description: 'Minimum IoU of binarized map outputs.', default: String(DEFAULT_TASK_THRESHOLDS.minIou) }),
    'max-line-acc-drop': Flags.string({ description: 'Maximum line accuracy drop in points (CTC sequences with string labels).', default: '3' }),
    'max-acc-drop': Flags.string({ description: 'Maximum top-1 accuracy drop in points (labeled data).', default: '1' }),
    'max-ppl-increase': Flags.string({ description: 'Maximum perplexity increase over fp32 in percent (language-model outputs on token data).', default: '1' }),
    verify: Flags.boolean({ description: 'Verify the int8 model against the original.', default: true, allowNo: true }),
    benchmark: Flags.boolean({ description: 'Benchmark int8 against fp32.', default: true, allowNo: true }),
    'benchmark-runs': Flags.integer({ description: 'Timed runs per model.', default: 100 }),
    recover: Flags.boolean({ description: 'Static mode: when the verdict fails on real evaluation data, search calibration methods and then keep the most sensitive nodes in float (up to --max-float-share) until the limit it missed holds, and write that model.', default: true, allowNo: true }),
    'recover-budget': Flags.integer({ description: 'Seconds the search after a failed verdict may spend before the default recipe is written.', default: 600 }),
    'latency-search': Flags.boolean({ description: 'Static mode: time the opt-in op families on this machine and keep those that are faster and still pass verification; when int8 kernels are slower than fp32, write int8-stored weights that run at fp32 speed.', default: true, allowNo: true }),
    'latency-budget': Flags.integer({ description: 'Seconds the latency search may spend before it stops trying families (the fp32 check always runs).', default: 300 }),
    threads: Flags.integer({ description: 'Threads for benchmarking.', default: 1 }),
    'bias-correction': Flags.boolean({ description: 'Shift each quantized layer\'s bias by the mean error it introduces on the calibration data (default: from the target; on for tflite-int8).', allowNo: true }),
    'io-type': Flags.string({ description: 'TFLite model inputs/outputs: float32 (QUANTIZE/DEQUANTIZE at the edges) or int8.', options: ['float32', 'int8'] }),
    equalize: Flags.boolean({ description: 'Cross-layer equalization of Conv → Relu/MaxPool → Conv pairs before calibrating (effect measured and reported).', default: false }),
    'accuracy-target': Flags.string({ description: 'Search until this holds: top1-drop<=0.5, snr>=30, cosine>=0.999, iou>=0.93, line-acc-drop<=1, top1-agree>=0.99, ppl-increase<=1, … (methods first, then float fallback of the most sensitive nodes).' }),
    'max-float-share': Flags.string({ description: 'Largest share of quantizable nodes --accuracy-target may keep in float.', default: '0.1' }),
    qat: Flags.boolean({ description: 'Quantization-aware training: fine-tune the fake-quantized model on the labeled --data, then write the int8 model; plain PTQ is measured on the same evaluation data (TensorFlow.js backend).', default: false }),
    epochs: Flags.integer({ description: 'With --qat: passes over the training data [default: 1].', dependsOn: ['qat'] }),
    'learning-rate': Flags.string({ description: 'With --qat: Adam learning rate [default: 1e-4].', dependsOn: ['qat'] }),
    'batch-size': Flags.integer({ description: 'With --qat: samples per training step [default: 32].', dependsOn: ['qat'] }),
    'runs-dir': Flags.string({ description: 'Where run directories go; with --queue, a folder the workers share.', default: './qforge-runs' }),
    queue: Flags.string({ description: 'With --accuracy-target: score the search\'s candidates on workers through this Redis queue (redis://host:port; docs/scale-out.md); calibration and the final model stay here. Default: in this process.', helpGroup: 'SCALE-OUT' }),
    ...taskFlags,
    ...imageFlags,
  };

  async run(): Promise<QuantizeOutput | PresetOutput> {
    const { args, flags } = await this.parse(Quantize);
    if (flags.preset && !flags.output) throw errInvalidOption('--preset', 'a preset writes several models and needs the folder for them', 'Pass -o <folder>, e.g. -o ./my-model/onnx.');
    if (flags.preset && (flags.mode !== 'static' || flags['calib-table'] || flags['accuracy-target'])) {
      throw errInvalidOption('--preset', 'the preset chooses the mode of each variant', 'Leave out --mode, --calib-table and --accuracy-target.');
    }
    if (flags.queue && !flags['accuracy-target']) throw errInvalidOption('--queue', 'only the --accuracy-target search runs trials that workers can share', 'Add --accuracy-target …, or leave out --queue (one quantize run is one process; use `qforge sweep --queue` for a grid).');
    if (flags.queue && flags.preset) throw errInvalidOption('--queue', 'a preset run has no search to share', 'Leave out --queue.');
    // Task flags that contradict each other fail now, not after the calibration.
    const task = taskOptions(flags);
    // An unreachable queue fails now, not after the calibration.
    if (flags.queue) await checkQueueReachable(flags.queue);
    const model = flags.preset ? presetInput(args.model) : modelRef(args.model);
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'quantize' });
    const target = resolveTargetProfile(flags.target, undefined, backend.capabilities.targets);
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    const options: QuantizeRunOptions = {
      model,
      output: flags.output,
      runsDir: flags['runs-dir'],
      target,
      mode: flags.mode as QuantMode,
      format: flags.format as QuantFormat | undefined,
      data: flags.data,
      samples: positiveInt('samples', flags.samples),
      method: flags.method as CalibrationMethod | undefined,
      percentile: numberIn('percentile', flags.percentile, RANGES.percentile),
      perChannel: flags['per-channel'],
      activationType: flags['activation-type'] as QuantType | undefined,
      weightType: flags['weight-type'] as QuantType | undefined,
      reduceRange: flags['reduce-range'],
      calibTable: flags['calib-table'],
      excludeNodes: list(flags['exclude-nodes']),
      activation16Nodes: list(flags['a16-nodes']),
      weightOnly: {
        bits: flags['weight-bits'] as 4 | 8,
        blockSize: flags['block-size'],
        symmetric: flags.symmetric,
        algorithm: flags.algorithm as 'rtn' | 'gptq',
        keepFloat: list(flags['keep-float']) as ('first' | 'last')[],
      },
      fallback: flags.fallback as 'float' | 'a16',
      opTypes: list(flags['op-types']),
      evalData: flags['eval-data'],
      evalSamples: positiveInt('eval-samples', flags['eval-samples']),
      verify: flags.verify,
      benchmark: flags.benchmark,
      benchmarkRuns: positiveInt('benchmark-runs', flags['benchmark-runs']),
      recover: flags.recover,
      recoverBudgetMs: positiveInt('recover-budget', flags['recover-budget'], 86_400) * 1000,
      latencySearch: flags['latency-search'],
      latencyBudgetMs: positiveInt('latency-budget', flags['latency-budget'], 86_400) * 1000,
      threads: positiveInt('threads', flags.threads, 1024),
      thresholds: {
        ...(flags['min-snr'] !== undefined ? { minSnrDb: numberIn('min-snr', flags['min-snr'], RANGES.snrDb) } : {}),
        maxAccuracyDropPoints: numberIn('max-acc-drop', flags['max-acc-drop'], RANGES.accDropPoints),
        minIou: numberIn('min-iou', flags['min-iou'], RANGES.share),
        maxLineAccuracyDropPoints: numberIn('max-line-acc-drop', flags['max-line-acc-drop'], RANGES.accDropPoints),
        maxPerplexityIncreasePercent: numberIn('max-ppl-increase', flags['max-ppl-increase'], RANGES.percentIncrease),
      },
      task,
      image: imageOptions(flags),
      inputShapes: flags['input-shape'] ?? [],
      accuracyTarget: flags['accuracy-target'],
      biasCorrection: flags['bias-correction'],
      ioType: flags['io-type'] as 'float32' | 'int8' | undefined,
      equalize: flags.equalize,
      qat: flags.qat
        ? {
            epochs: positiveInt('epochs', flags.epochs ?? 1, 1000),
            learningRate: numberIn('learning-rate', flags['learning-rate'] ?? '1e-4', { min: 0, max: 1, minExclusive: true }),
            batchSize: positiveInt('batch-size', flags['batch-size'] ?? 32, 65536),
          }
        : undefined,
      maxFloatShare: numberIn('max-float-share', flags['max-float-share'], RANGES.share),
      command: ['quantize', ...redactArgs(this.argv)].join(' '),
      qforgeVersion: this.config.version,
      ...(flags.queue ? { trialRunner: (plan, c) => queuedTrialRunner({ url: flags.queue!, runsDir: flags['runs-dir'], plan, signal: c.signal }) } : {}),
    };
    if (flags.preset) {
      const out = await runTransformersPreset(options, flags.output!, (o) => runAndRender(backend, o, ctx)).finally(stop);
      this.log(formatPresetTable(out));
      if (!out.passed) {
        if (this.jsonEnabled()) this.logJson(out);
        this.exit(1);
      }
      return out;
    }
    const result = await runAndRender(backend, options, ctx).finally(stop);
    this.log(result.summary.trimEnd());
    this.log(`run directory: ${result.runDir}`);
    const out = { runDir: result.runDir, report: result.report };
    if (result.report.verdict === 'fail') {
      if (this.jsonEnabled()) this.logJson(out);
      this.exit(1);
    }
    return out;
  }
}
