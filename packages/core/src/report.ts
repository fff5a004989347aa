// The run report: a versioned, validated receipt of what a run did and measured.
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import type { BenchmarkResult, GraphChange, ModelFormat, NodeDecision, VerifyResult } from './contract';
import type { DatasetDescription } from './datasets/dataset';
import { formatSpeedup } from './bench-stats';
import { describeTaskMetric } from './tasks';
import { CORRECTION_NOISE, type CorrectionRecord } from './corrections';
import type { LatencyChoices } from './latency-search';
import { errReportInvalid, type QforgeErrorJson } from './errors';
import type { SearchResult, SensitivityResult } from './tuning';

export const REPORT_SCHEMA_VERSION = 1;

export interface ArtifactRecord {
  path: string;
  format?: ModelFormat | 'json' | 'text' | 'html';
  sizeBytes: number;
  sha256: string;
}

export type Verdict = 'pass' | 'fail' | 'unverified' | 'error';

export interface RunReport {
  kind: 'qforge.run-report';
  schemaVersion: number;
  runId: string;
  command: string;
  createdAt: string;
  durationMs: number;
  status: 'succeeded' | 'failed';
  tool: { qforge: string; node: string; platform: string };
  backend: { id: string; package: string; version: string; runtime?: string };
  target: { id: string; cpu?: string; flags?: string[] };
  input: ArtifactRecord & { format: ModelFormat };
  output?: ArtifactRecord & { format: ModelFormat };
  calibrationTable?: ArtifactRecord;
  options: Record<string, unknown>;
  dataset?: DatasetDescription & { samplesUsed: number };
  evalDataset?: DatasetDescription & { samplesUsed: number };
  calibration?: { method: string; sampleCount: number; tensorCount: number; durationMs: number; reused: boolean };
  quantization?: { durationMs: number; preparation: GraphChange[]; decisions: NodeDecision[]; quantizedNodes: number; skippedNodes: number };
  sizes?: { inputBytes: number; outputBytes: number; ratio: number };
  verify?: VerifyResult;
  benchmark?: BenchmarkResult;
  /** Each switchable correction with its measured effect (same data, with vs without) and whether the written model has it. */
  corrections?: CorrectionRecord[];
  /** The accuracy-aware search path, when `--accuracy-target` was given. */
  search?: SearchResult;
  /** Per-node sensitivity, for `qforge sensitivity` runs. */
  sensitivity?: SensitivityResult;
  /** What the latency search timed and kept (static mode, unless `--no-latency-search`). */
  latencyChoices?: LatencyChoices;
  verdict: Verdict;
  /** Why the verdict is what it is, in plain words. */
  verdictReasons: string[];
  error?: QforgeErrorJson;
}

const artifact = {
  type: 'object',
  required: ['path', 'sizeBytes', 'sha256'],
  properties: { path: { type: 'string' }, sizeBytes: { type: 'number' }, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
} as const;

const schema = {
  type: 'object',
  required: ['kind', 'schemaVersion', 'runId', 'command', 'createdAt', 'status', 'tool', 'backend', 'target', 'input', 'options', 'verdict', 'verdictReasons'],
  properties: {
    kind: { const: 'qforge.run-report' },
    schemaVersion: { const: REPORT_SCHEMA_VERSION },
    runId: { type: 'string', minLength: 1 },
    command: { type: 'string' },
    createdAt: { type: 'string' },
    durationMs: { type: 'number' },
    status: { enum: ['succeeded', 'failed'] },
    tool: { type: 'object', required: ['qforge', 'node'] },
    backend: { type: 'object', required: ['id', 'version'] },
    target: { type: 'object', required: ['id'] },
    input: artifact,
    output: artifact,
    calibrationTable: artifact,
    options: { type: 'object' },
    verdict: { enum: ['pass', 'fail', 'unverified', 'error'] },
    verdictReasons: { type: 'array', items: { type: 'string' } },
  },
} as const;

const validateReportSchema = new Ajv({ allErrors: false }).compile(schema);

export function validateRunReport(json: unknown, source = '<report>'): RunReport {
  if (!validateReportSchema(json)) {
    const e = validateReportSchema.errors?.[0];
    throw errReportInvalid(source, e ? `${e.instancePath || '/'} ${e.message}` : 'schema mismatch');
  }
  return json as unknown as RunReport;
}

export function readRunReport(path: string): RunReport {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw errReportInvalid(path, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'report.json does not exist' : `not JSON (${(e as Error).message})`);
  }
  return validateRunReport(json, path);
}

function fmtBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** `, shapes x 1×3×48×320`: the concrete input shapes a dataset fed, so a reader sees what was measured. */
function fmtShapes(d: DatasetDescription): string {
  const entries = Object.entries(d.inputShapes ?? {});
  return entries.length ? `, shapes ${entries.map(([k, v]) => `${k} ${v.join(' | ')}`).join('; ')}` : '';
}

/** The human summary written as summary.txt and printed by `quantize` and `report`. */
export function formatRunSummary(r: RunReport): string {
  const lines: string[] = [];
  lines.push(`qforge run ${r.runId} (${r.command}) — ${r.status}`);
  lines.push(`backend   ${r.backend.id} ${r.backend.version}${r.backend.runtime ? ` (${r.backend.runtime})` : ''}, target ${r.target.id}`);
  lines.push(`input     ${r.input.path} (${fmtBytes(r.input.sizeBytes)})`);
  if (r.output) lines.push(`output    ${r.output.path} (${fmtBytes(r.output.sizeBytes)})`);
  if (r.sizes) lines.push(`size      ${fmtBytes(r.sizes.inputBytes)} → ${fmtBytes(r.sizes.outputBytes)} (${r.sizes.ratio.toFixed(3)}×)`);
  if (r.dataset) lines.push(`calib     ${r.dataset.source}, ${r.dataset.samplesUsed} samples${r.dataset.synthetic ? ' (SYNTHETIC: says nothing about accuracy)' : ''}${fmtShapes(r.dataset)}`);
  if (r.evalDataset) lines.push(`eval      ${r.evalDataset.source}, ${r.evalDataset.samplesUsed} samples${r.evalDataset.synthetic ? ' (SYNTHETIC)' : ''}${fmtShapes(r.evalDataset)}`);
  if (r.calibration) lines.push(`method    ${r.calibration.method}, ${r.calibration.tensorCount} tensors, ${r.calibration.durationMs.toFixed(0)} ms${r.calibration.reused ? ' (reused table)' : ''}`);
  if (r.quantization) lines.push(`quantized ${r.quantization.quantizedNodes} nodes, kept ${r.quantization.skippedNodes} in float, ${r.quantization.preparation.length} preparation changes`);
  if (r.verify) {
    // What each output means and how it compares comes first; raw fidelity follows for diagnosis.
    for (const o of r.verify.outputs) {
      if (!o.task) continue;
      lines.push(`task      ${o.output} (${o.task.kind}; ${o.task.detectedFrom}): ${describeTaskMetric(o.task)}`);
      const ex = o.task.examples?.find((e) => e.reference !== e.candidate) ?? o.task.examples?.[0];
      if (ex && o.task.kind === 'sequence') lines.push(`          e.g. ${ex.label !== undefined ? `label "${ex.label}", ` : ''}fp32 "${ex.reference}", int8 "${ex.candidate}"`);
    }
    for (const o of r.verify.outputs) {
      lines.push(
        `fidelity  ${o.output}: SNR ${o.snrDb.toFixed(1)} dB, cosine ${o.cosine.toFixed(5)}, max|err| ${o.maxAbsError.toPrecision(3)}` +
          (o.top1Agreement !== undefined ? `, top-1 agree ${(o.top1Agreement * 100).toFixed(1)}%` : '') +
          (o.preActivation ? ` (before ${o.preActivation.op}: SNR ${o.preActivation.snrDb.toFixed(1)} dB, cosine ${o.preActivation.cosine.toFixed(5)})` : ''),
      );
    }
    if (r.verify.accuracy) {
      const a = r.verify.accuracy;
      lines.push(`accuracy  fp32 ${(a.reference * 100).toFixed(2)}% → int8 ${(a.candidate * 100).toFixed(2)}% (drop ${a.dropPoints.toFixed(2)} points, ${r.verify.samples} samples)`);
    }
  }
  if (r.benchmark) {
    const b = r.benchmark;
    const p = b.primary.latencyMs;
    if (b.compare) {
      const c = b.compare.latencyMs;
      lines.push(`latency   fp32 ${c.p50.toFixed(3)} ms → int8 ${p.p50.toFixed(3)} ms median (mean ${c.mean.toFixed(3)} → ${p.mean.toFixed(3)}), speedup ${formatSpeedup(b.speedupEstimate ?? b.speedup)} at ${b.primary.threads} thread(s), ${p.count} alternated runs each`);
      if (b.crossRuntime) lines.push(`          cross-runtime ratio: int8 in ${b.crossRuntime.primary} against fp32 in ${b.crossRuntime.compare}, not one runtime with and without int8`);
    } else {
      lines.push(`latency   ${p.mean.toFixed(3)} ms mean, p50 ${p.p50.toFixed(3)}, p99 ${p.p99.toFixed(3)} at ${b.primary.threads} thread(s)`);
    }
  }
  for (const c of r.corrections ?? []) {
    // Reports from before `applied` was recorded shipped every correction.
    const verdict = c.decisive === false ? 'for information' : c.applied === false ? 'left out of the written model' : 'kept';
    const effect = c.helped ? 'better with it' : Math.abs(c.with - c.without) <= CORRECTION_NOISE ? 'no measurable difference' : 'worse with it';
    lines.push(`correction ${c.name}: ${c.metric} ${c.without.toFixed(2)} without → ${c.with.toFixed(2)} with (${effect}; ${verdict})`);
  }
  if (r.sensitivity) {
    const sens = r.sensitivity;
    lines.push(`sensitivity ${sens.metric}: all quantized ${sens.baseline.toFixed(2)}; ${sens.layers.length} nodes${sens.rankAgreement !== undefined ? `, rank agreement ${sens.rankAgreement.toFixed(2)}` : ''}`);
    for (const l of sens.layers.slice(0, 5)) lines.push(`          ${l.node}: float fallback recovers ${l.recovery.toFixed(2)}`);
  }
  if (r.latencyChoices) {
    const l = r.latencyChoices;
    const kept = l.storageOnly ? 'int8 storage only (float compute)' : l.families.length ? `default + ${l.families.join(', ')}` : 'default op families';
    lines.push(`latency   search kept ${kept}${l.floatNodes?.length ? ` (${l.floatNodes.length} of their nodes in float)` : ''}${l.method ? ` with ${l.method} ranges (recalibrated)` : ''}${l.vsFp32 ? `, ${formatSpeedup(l.vsFp32)} vs fp32` : ''}; ${l.steps.length} timings in ${(l.durationMs / 1000).toFixed(1)} s`);
    for (const s of l.steps) lines.push(`          ${s.candidate} vs ${s.against}: ${s.medianMs.toFixed(3)} vs ${s.againstMedianMs.toFixed(3)} ms, ${formatSpeedup(s.speedup)}, verify ${s.passed ? 'pass' : 'FAIL'} → ${s.kept ? 'kept' : 'dropped'}`);
  }
  if (r.search) {
    lines.push(`${r.search.trigger === 'verdict' ? 'recover   default recipe failed, searched for' : 'target   '} ${r.search.target}: ${r.search.met ? 'met' : 'NOT met'} with method ${r.search.method}, ${r.search.floatNodes.length} of ${r.search.quantizableNodes} quantizable nodes in float${r.search.floatNodes.length ? ` (${r.search.floatNodes.join(', ')})` : ''}; ${r.search.path.length} trials`);
  }
  lines.push(`verdict   ${r.verdict.toUpperCase()}${r.verdictReasons.length ? ': ' + r.verdictReasons.join('; ') : ''}`);
  if (r.error) lines.push(`error     ${r.error.code}: ${r.error.message}${r.error.hint ? `\n          hint: ${r.error.hint}` : ''}`);
  return lines.join('\n') + '\n';
}
