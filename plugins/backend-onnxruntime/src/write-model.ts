// Writes a rewritten model only once ONNX Runtime accepts it; a large model goes with one external data file.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { ExternalDataOptions, GraphChange, NodeDecision, QuantizeResult } from '@qforge/core';
import { MAX_INLINE_BYTES, saveModel, type ModelProto } from '@qforge/onnx';
import { createSession } from './runtime';

export interface WrittenModel {
  /** The model file plus its external data, in bytes. */
  sizeBytes: number;
  /** The external data file, when the model needed one. */
  externalFile?: string;
}

function initializerBytes(proto: ModelProto): number {
  return proto.graph.initializer.reduce((a, t) => a + (t.rawData?.byteLength ?? 0), 0);
}

/**
 * The model is encoded once: a model that fits in one protobuf is saved beside the output under a
 * temporary name, the runtime's check loads that file, and only then is it renamed into place (so
 * the check sees exactly the bytes that ship, and a large model is never held encoded twice). One
 * that does not fit (over ~1.8 GiB of weights, or `externalData.inlineLimitBytes`) is written with
 * its external data file (`<output>.data`, or `externalData.fileName`), whose name the model
 * records, checked from disk, and both files are removed if the runtime refuses it.
 */
export async function writeCheckedModel(proto: ModelProto, output: string, externalData: ExternalDataOptions = {}): Promise<WrittenModel> {
  if (initializerBytes(proto) <= (externalData.inlineLimitBytes ?? MAX_INLINE_BYTES)) {
    const candidate = join(dirname(output), `.${basename(output)}.${process.pid}.unchecked.onnx`);
    try {
      const saved = await saveModel(proto, candidate, { externalData: 'never' });
      const check = await createSession(candidate, { optimization: 'all' });
      await check.release();
      renameSync(candidate, output);
      return { sizeBytes: saved.bytes };
    } finally {
      rmSync(candidate, { force: true });
    }
  }
  const saved = await saveModel(proto, output, { externalData: 'always', ...(externalData.fileName ? { externalDataName: externalData.fileName } : {}) });
  try {
    const check = await createSession(output, { optimization: 'all' });
    await check.release();
  } catch (e) {
    for (const f of [output, saved.externalFile]) if (f && existsSync(f)) rmSync(f, { force: true });
    throw e;
  }
  return { sizeBytes: saved.bytes, externalFile: saved.externalFile };
}

/**
 * The last step of every mode: the rewritten model is written (checked by the runtime first) and
 * described as the backend's result, external data listed as an artifact beside it.
 */
export async function writeQuantizeResult(proto: ModelProto, output: string, record: { preparation: GraphChange[]; decisions: NodeDecision[] }, externalData?: ExternalDataOptions): Promise<QuantizeResult> {
  const written = await writeCheckedModel(proto, output, externalData);
  return {
    model: { path: output, format: 'onnx' },
    sizeBytes: written.sizeBytes,
    preparation: record.preparation,
    decisions: record.decisions,
    ...(written.externalFile ? { artifacts: { [written.externalFile]: 'external data (weights) of the model' } } : {}),
  };
}
