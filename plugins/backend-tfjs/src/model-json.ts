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
  // Shapes the rest of the backend relies on, checked once here so a damaged file is E_MODEL_CORRUPT, not a TypeError later.
  if (typeof json.modelTopology !== 'object') throw errModelCorrupt(path, 'modelTopology is not an object');
  const topo = json.modelTopology as { config?: unknown; model_config?: { config?: unknown } };
  const cfg = (topo.model_config?.config ?? topo.config) as { layers?: unknown } | unknown[] | undefined;
  const layers = cfg && !Array.isArray(cfg) && typeof cfg === 'object' ? (cfg as { layers?: unknown }).layers : undefined;
  if (layers !== undefined) {
    if (!Array.isArray(layers)) throw errModelCorrupt(path, 'modelTopology layers is not a list');
    layers.forEach((l: { class_name?: unknown; config?: unknown }, i) => {
      if (!l || typeof l !== 'object' || typeof l.class_name !== 'string' || !l.config || typeof l.config !== 'object') throw errModelCorrupt(path, `layer ${i} has no class_name or no config object`);
    });
  }
  for (const group of json.weightsManifest) {
    if (!Array.isArray(group?.paths)) throw errModelCorrupt(path, 'a weightsManifest group has no paths list');
    if (!Array.isArray(group.weights)) throw errModelCorrupt(path, 'a weightsManifest group has no weights list');
    for (const w of group.weights as unknown[]) {
      const { name, shape, dtype } = (w ?? {}) as { name?: unknown; shape?: unknown; dtype?: unknown };
      if (typeof name !== 'string' || typeof dtype !== 'string' || !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw errModelCorrupt(path, `weight ${typeof name === 'string' ? `"${name}"` : '(unnamed)'} needs a name, a dtype and a shape of non-negative integers`);
      }
    }
    for (const p of group.paths) {
      if (typeof p !== 'string' || p.includes('..') || p.startsWith('/')) throw errModelCorrupt(path, `weight shard path "${String(p)}" escapes the model's folder`);
      // Core's one symlink policy: a shard linked out of the model's folder, or a FIFO, is never read.
      resolveInsideFolder(join(dirname(path), p), dirname(path), 'weight shard', { missing: () => errModelCorrupt(path, `weight shard "${p}" is missing`) });
    }
  }
  return json;
}

