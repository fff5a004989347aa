// Writes a rewritten model only once ONNX Runtime accepts it; a large model goes with one external data file.
import { existsSync, rmSync } from 'node:fs';
import { MAX_INLINE_BYTES, encodeModel, saveModel, type ModelProto } from '@qforge/onnx';
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
 * A model that fits in one protobuf is checked from memory before anything is written. One that
 * does not (over ~1.8 GiB of weights) cannot be handed to the runtime as bytes: it is written with
 * its external data file, checked from disk, and both files are removed if the runtime refuses it.
 */
export async function writeCheckedModel(proto: ModelProto, output: string): Promise<WrittenModel> {
  if (initializerBytes(proto) <= MAX_INLINE_BYTES) {
    const check = await createSession(encodeModel(proto), { optimization: 'all' });
    await check.release();
    const saved = await saveModel(proto, output);
    return { sizeBytes: saved.bytes };
  }
  const saved = await saveModel(proto, output, { externalData: 'always' });
  try {
    const check = await createSession(output, { optimization: 'all' });
    await check.release();
  } catch (e) {
    for (const f of [output, saved.externalFile]) if (f && existsSync(f)) rmSync(f, { force: true });
    throw e;
  }
  return { sizeBytes: saved.bytes, externalFile: saved.externalFile };
}
