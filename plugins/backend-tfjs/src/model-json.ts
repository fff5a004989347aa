// model.json of TensorFlow.js models: parsed, checked, shards kept inside the model's folder.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errModelCorrupt } from '@qforge/core';

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
    for (const p of group.paths) {
      if (p.includes('..') || p.startsWith('/')) throw errModelCorrupt(path, `weight shard path "${p}" escapes the model's folder`);
      if (!existsSync(join(dirname(path), p))) throw errModelCorrupt(path, `weight shard "${p}" is missing`);
    }
  }
  return json;
}

