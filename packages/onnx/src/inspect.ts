// What `qforge inspect` shows for an ONNX model.
import { statSync } from 'node:fs';
import type { ModelInfo } from '@qforge/core';
import { sha256File } from '@qforge/core';
import { graphInputs, graphOutputs, opsetVersion } from './graph';
import type { LoadedModel } from './model';

export async function describeModel(model: LoadedModel): Promise<ModelInfo> {
  const { proto } = model;
  const g = proto.graph;
  const opHistogram: Record<string, number> = {};
  for (const n of g.node) {
    const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    opHistogram[key] = (opHistogram[key] ?? 0) + 1;
  }
  let parameterCount = 0;
  for (const t of g.initializer) parameterCount += (t.dims ?? []).reduce((a, b) => a * Number(b), 1);
  for (const n of g.node) {
    if (n.opType !== 'Constant') continue;
    const t = n.attribute.find((a) => a.name === 'value')?.t;
    if (t) parameterCount += (t.dims ?? []).reduce((a, b) => a * Number(b), 1);
  }
  const notes: string[] = [];
  const ext = Object.keys(model.externalTensors);
  if (ext.length) notes.push(`${ext.length} tensor(s) stored in external data files`);
  if (model.unknownFields?.length) notes.push(`${model.unknownFields.length} field(s) unknown to ONNX 1.20's schema: a model qforge writes from this one leaves them out`);
  const inputs = graphInputs(g);
  if (inputs.some((i) => i.shape.some((d) => typeof d !== 'number'))) notes.push('some input dimensions are symbolic or unknown');
  if (opHistogram.Constant) notes.push(`${opHistogram.Constant} Constant node(s): weights are not initializers (qforge converts them when quantizing)`);
  const path = model.path ?? '<memory>';
  return {
    path,
    format: 'onnx',
    sizeBytes: model.path ? statSync(model.path).size : 0,
    sha256: model.path ? await sha256File(model.path) : '',
    producer: [proto.producerName, proto.producerVersion].filter(Boolean).join(' ') || undefined,
    opset: opsetVersion(proto),
    inputs,
    outputs: graphOutputs(g),
    opHistogram,
    parameterCount,
    notes,
  };
}
