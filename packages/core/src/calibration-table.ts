// The calibration table: per-tensor statistics and chosen ranges, tied to one model by its hash.
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import type { CalibrateOptions, CalibrationMethod, ModelFormat } from './contract';
import type { DatasetDescription } from './datasets/dataset';
import { errCalibTableInvalid, errCalibTableMismatch } from './errors';
import { writeFileAtomic } from './files';
import { chooseRange, type HistogramJson, type TensorStatistics } from './stats';

export const CALIBRATION_TABLE_VERSION = 1;

export interface TensorCalibration {
  min: number;
  max: number;
  /** The range quantization uses, after the method's clipping. */
  range: [number, number];
  histogram?: HistogramJson;
}

export interface CalibrationTable {
  kind: 'qforge.calibration-table';
  schemaVersion: number;
  createdAt: string;
  backend: string;
  /** The model the statistics were collected on (after preparation) and the input it came from. */
  model: { sha256: string; format: ModelFormat; preparedSha256?: string };
  method: CalibrationMethod;
  methodOptions: Record<string, unknown>;
  sampleCount: number;
  dataset: DatasetDescription;
  tensors: Record<string, TensorCalibration>;
}

const schema = {
  type: 'object',
  required: ['kind', 'schemaVersion', 'createdAt', 'backend', 'model', 'method', 'sampleCount', 'dataset', 'tensors'],
  properties: {
    kind: { const: 'qforge.calibration-table' },
    schemaVersion: { const: CALIBRATION_TABLE_VERSION },
    createdAt: { type: 'string' },
    backend: { type: 'string' },
    model: { type: 'object', required: ['sha256', 'format'], properties: { sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' }, format: { type: 'string' } } },
    method: { enum: ['minmax', 'percentile', 'entropy', 'mse'] },
    methodOptions: { type: 'object' },
    sampleCount: { type: 'integer', minimum: 1 },
    dataset: { type: 'object', required: ['kind', 'source'] },
    tensors: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['min', 'max', 'range'],
        properties: {
          min: { type: 'number' },
          max: { type: 'number' },
          range: { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 },
        },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: false });
const validateTable = ajv.compile(schema);

export function validateCalibrationTable(json: unknown, source = '<table>'): CalibrationTable {
  if (!validateTable(json)) {
    const e = validateTable.errors?.[0];
    throw errCalibTableInvalid(source, e ? `${e.instancePath || '/'} ${e.message}` : 'schema mismatch');
  }
  return json as unknown as CalibrationTable;
}

export function readCalibrationTable(path: string): CalibrationTable {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw errCalibTableInvalid(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'file does not exist' : `not JSON (${(e as Error).message})`);
  }
  return validateCalibrationTable(json, path);
}

export async function writeCalibrationTable(path: string, table: CalibrationTable): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(table, null, 1) + '\n');
}

/** Refuses a table computed on another model, or missing tensors the quantizer needs. */
export function assertTableMatches(table: CalibrationTable, modelSha256: string, requiredTensors: string[] = []): void {
  if (table.model.sha256 !== modelSha256) {
    throw errCalibTableMismatch(`it was computed on model ${table.model.sha256.slice(0, 12)}…, this model is ${modelSha256.slice(0, 12)}…`);
  }
  const missing = requiredTensors.filter((t) => !(t in table.tensors));
  if (missing.length) throw errCalibTableMismatch(`it has no statistics for ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}`, { tensor: missing[0] });
}

/**
 * A table from streamed statistics: each tensor's range chosen by the calibration method, with
 * the method's options recorded so a reused table can be checked and explained.
 */
export function buildCalibrationTable(args: {
  backend: string;
  model: CalibrationTable['model'];
  options: CalibrateOptions;
  sampleCount: number;
  dataset: DatasetDescription;
  stats: Map<string, TensorStatistics>;
  methodOptions?: Record<string, unknown>;
}): CalibrationTable {
  const { options } = args;
  const activationType = options.activationType ?? options.target.defaults.activationType;
  const table: CalibrationTable = {
    kind: 'qforge.calibration-table',
    schemaVersion: CALIBRATION_TABLE_VERSION,
    createdAt: new Date().toISOString(),
    backend: args.backend,
    model: args.model,
    method: options.method,
    methodOptions: {
      percentile: options.method === 'percentile' ? options.percentile ?? 99.999 : undefined,
      movingAverage: options.movingAverage,
      activationType,
      ...args.methodOptions,
    },
    sampleCount: args.sampleCount,
    dataset: args.dataset,
    tensors: {},
  };
  for (const [t, s] of args.stats) {
    if (s.minMax.count === 0) continue;
    const range = chooseRange(s.minMax.min, s.minMax.max, s.histogram, { method: options.method, percentile: options.percentile, activationType });
    table.tensors[t] = { min: s.minMax.min, max: s.minMax.max, range };
    if (options.keepHistograms && s.histogram) table.tensors[t].histogram = s.histogram.toJSON();
  }
  return table;
}
