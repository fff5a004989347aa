// Content-derived job ids: the same trial (model bytes, options, data spec) always gets the same id.
import { createHash } from 'node:crypto';

/** JSON with sorted keys and no undefined members, so equal content hashes equally. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/**
 * The job id of a trial: SHA-256 over the trial kind, the model's SHA-256 and the canonical spec
 * (options and data spec). A rerun or a retry adds the same id, which BullMQ keeps once.
 */
export function trialJobId(kind: string, modelSha256: string, spec: unknown): string {
  const digest = createHash('sha256').update(canonicalJson({ kind, model: modelSha256, spec })).digest('hex');
  // Prefixed so the id can never read as a number (BullMQ reserves numeric ids for its own counter).
  return `t-${digest.slice(0, 40)}`;
}
