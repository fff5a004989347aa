// Labels from a file beside the data: `labels.json` or `labels.txt`, one per sample in dataset order.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { errDatasetInvalid } from '../errors';
import type { Dataset } from './dataset';

/** The label file in `folder`, if any: labels.json first, then labels.txt. */
export function findLabelFile(folder: string): string | undefined {
  for (const name of ['labels.json', 'labels.txt']) if (existsSync(join(folder, name))) return join(folder, name);
  return undefined;
}

/**
 * Reads a label file: a JSON array of strings (texts) or integers (class indices), or text with one
 * label per line (texts; a trailing empty line is ignored, other empty lines are empty texts).
 */
export function readLabelFile(path: string): (string | number)[] {
  const raw = readFileSync(path, 'utf8');
  if (path.endsWith('.json')) {
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (e) {
      throw errDatasetInvalid(path, `not JSON (${(e as Error).message})`, 'labels.json is an array with one label per sample: ["text", …] or [3, 7, …].');
    }
    if (!Array.isArray(json) || !json.every((x) => typeof x === 'string' || (Number.isInteger(x) && x >= 0))) {
      throw errDatasetInvalid(path, 'labels.json must be an array of strings or non-negative integers', 'One label per sample, in the order the data is read (file names sorted).');
    }
    return json as (string | number)[];
  }
  const lines = raw.split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Gives each sample its label from the file; the count must match the dataset's. */
export function withLabelFile(dataset: Dataset, file: string): Dataset {
  const labels = readLabelFile(file);
  const count = dataset.description.count;
  if (count !== undefined && labels.length !== count) {
    throw errDatasetInvalid(file, `${labels.length} labels for ${count} samples`, 'One label per sample, in the order the data is read (file names sorted).');
  }
  const numeric = labels.every((l) => typeof l === 'number');
  const description = { ...dataset.description, labelFile: file, labeled: dataset.description.labeled || numeric };
  return {
    description,
    async *samples(options = {}) {
      let i = options.offset ?? 0;
      for await (const s of dataset.samples(options)) {
        const l = labels[i++];
        if (l === undefined) throw errDatasetInvalid(file, `no label for sample ${s.id} (${labels.length} labels)`);
        yield typeof l === 'number' ? { ...s, label: l } : { ...s, text: l };
      }
    },
  };
}

/**
 * Attaches the label file beside a path dataset (inside a folder, or next to a single file) unless
 * the data is already labeled by class folders. `random` and `mnist` specs are returned as they are.
 */
export function withLabelsBeside(spec: string, dataset: Dataset): Dataset {
  if (dataset.description.labeled || dataset.description.synthetic || dataset.description.kind === 'mnist') return dataset;
  const abs = resolve(spec);
  if (!existsSync(abs)) return dataset;
  const file = findLabelFile(statSync(abs).isDirectory() ? abs : dirname(abs));
  return file ? withLabelFile(dataset, file) : dataset;
}
