import { Args, Flags } from '@oclif/core';
import { DEFAULT_CALIBRATION_SAMPLES, checkOutputPath, modelInputFiles, modelRef, openDataset, withInputShapes, resolveTargetProfile, writeCalibrationTable, type CalibrationMethod, type CalibrationTable } from '@qforge/core';
import { resolve } from 'node:path';
import { QforgeCommand } from '../lib/base';
import { RANGES, backendFlag, imageFlags, imageOptions, numberIn, positiveInt, targetFlag } from '../lib/flags';
import { cliRunContext } from '../lib/progress';

export default class Calibrate extends QforgeCommand {
  static summary = 'Collect activation statistics over a dataset and save a reusable calibration table.';
  static description = 'Statistics stream sample by sample: memory does not grow with --samples. The table is tied to the model by its SHA-256 and can be passed to `quantize --calib-table`.';
  static examples = ['<%= config.bin %> calibrate model.onnx --data ./calib-images --samples 256 --method entropy -o table.json'];
  static args = { model: Args.string({ description: 'Model file.', required: true }) };
  static flags = {
    data: Flags.string({ char: 'd', description: 'Dataset: folder of images or .npy, labeled folder, .npy file, mnist[:split], random[:seed].', required: true }),
    samples: Flags.integer({ description: 'Samples to read.', default: DEFAULT_CALIBRATION_SAMPLES }),
    method: Flags.string({ description: 'Range method (default: from the target profile).', options: ['minmax', 'percentile', 'entropy', 'mse'] }),
    percentile: Flags.string({ description: 'Percentile kept by --method percentile.', default: '99.999' }),
    output: Flags.string({ char: 'o', description: 'Where to write the table (JSON).', required: true }),
    backend: backendFlag,
    target: targetFlag,
    ...imageFlags,
  };

  async run(): Promise<{ output: string; table: Omit<CalibrationTable, 'tensors'> & { tensorCount: number } }> {
    const { args, flags } = await this.parse(Calibrate);
    const model = modelRef(args.model);
    const samples = positiveInt('samples', flags.samples);
    const percentile = numberIn('percentile', flags.percentile, RANGES.percentile);
    checkOutputPath(flags.output, modelInputFiles(model));
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'calibrate' });
    const target = resolveTargetProfile(flags.target, undefined, backend.capabilities.targets);
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    const inputs = withInputShapes(await backend.modelInputs(model, ctx), flags['input-shape'] ?? []);
    const dataset = openDataset(flags.data, { inputs, image: imageOptions(flags) });
    const method = (flags.method ?? target.defaults.method) as CalibrationMethod;
    const table = await backend.calibrate(model, dataset, { method, samples, percentile, target }, ctx).finally(stop);
    const output = resolve(flags.output);
    await writeCalibrationTable(output, table);
    this.log(`calibrated ${Object.keys(table.tensors).length} tensors on ${table.sampleCount} samples of ${table.dataset.source} (${table.method}) → ${output}`);
    const { tensors, ...rest } = table;
    return { output, table: { ...rest, tensorCount: Object.keys(tensors).length } };
  }
}
