import { Args } from '@oclif/core';
import { createRunContext, modelRef, type ModelInfo } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { backendFlag } from '../lib/flags';
import { bytes, shape } from '../lib/format';

export default class Inspect extends QforgeCommand {
  static summary = 'Show a model: format, opset, inputs and outputs, operator histogram, parameters, size.';
  static examples = ['<%= config.bin %> inspect model.onnx', '<%= config.bin %> inspect ./tfjs-model/model.json --json'];
  static args = { model: Args.string({ description: 'Model file (.onnx, model.json, .tflite).', required: true }) };
  static flags = { backend: backendFlag };

  async run(): Promise<ModelInfo> {
    const { args, flags } = await this.parse(Inspect);
    const model = modelRef(args.model);
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'inspect' });
    const info = await backend.inspect(model, createRunContext());
    this.log(`${info.path}`);
    this.log(`format     ${info.format}${info.opset ? `, opset ${info.opset}` : ''}${info.producer ? `, from ${info.producer}` : ''}`);
    this.log(`size       ${bytes(info.sizeBytes)}, ${info.parameterCount.toLocaleString('en-US')} parameters`);
    for (const i of info.inputs) this.log(`input      ${i.name} ${i.dtype} ${shape(i.shape)}`);
    for (const o of info.outputs) this.log(`output     ${o.name} ${o.dtype} ${shape(o.shape)}`);
    const ops = Object.entries(info.opHistogram).sort((a, b) => b[1] - a[1]);
    this.log(`operators  ${ops.map(([k, v]) => `${k}×${v}`).join(', ')}`);
    for (const n of info.notes ?? []) this.log(`note       ${n}`);
    return info;
  }
}
