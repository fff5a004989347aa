// model.json of TensorFlow.js models: parsed, checked, shards kept inside the model's folder.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errModelCorrupt, resolveInsideFolder } from '@qforge/core';

export interface LayersJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology?: {
    class_name?: string;
    config?: { layers?: { class_name: string; config: { name: string; batch_input_shape?: (number | null)[]; dtype?: string } }[] } | { class_name: string }[];
    model_config?: { class_name?: string; config?: { layers?: { class_name: string; config: { name: string; batch_input_shape?: (number | null)[] } }[] } };
    node?: { op: string; name: string }[];
  };
  weightsManifest?: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
}

export function readModelJson(path: string): LayersJson {
  let json: LayersJson;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw errModelCorrupt(path, `model.json is not valid JSON (${(e as Error).message})`);
  }
  if (!json.modelTopology || !Array.isArray(json.weightsManifest)) throw errModelCorrupt(path, 'model.json lacks modelTopology or weightsManifest');
  for (const group of json.weightsManifest) {
    if (!Array.isArray(group?.paths)) throw errModelCorrupt(path, 'a weightsManifest group has no paths list');
    for (const p of group.paths) {
      if (typeof p !== 'string' || p.includes('..') || p.startsWith('/')) throw errModelCorrupt(path, `weight shard path "${String(p)}" escapes the model's folder`);
      // Core's one symlink policy: a shard linked out of the model's folder, or a FIFO, is never read.
      resolveInsideFolder(join(dirname(path), p), dirname(path), 'weight shard', { missing: () => errModelCorrupt(path, `weight shard "${p}" is missing`) });
    }
  }
  return json;
}

