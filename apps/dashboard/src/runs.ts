// Reading run directories safely: only regular, singly-linked files inside the runs folder, size-capped,
// opened so that a FIFO cannot block; one bad run folder is a broken row, never a failed list.
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readdirSync, readSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isInsideFolder, validateRunReport, type RunReport } from '@qforge/core';

/** Run ids are folder names qforge made: letters, digits, dot, dash, underscore. */
export const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
/** Artifacts a run folder may serve. */
export const ARTIFACTS = ['report.json', 'summary.txt', 'calibration.json', 'report.html', 'model.int8.onnx', 'model.int8.tflite'] as const;

export interface RunSummary {
  id: string;
  damaged: boolean;
  problem?: string;
  /** What the list calls the run: the model, and the options that tell it apart from other runs of that model. */
  label?: string;
  /** Options as short text, the ones a label may draw on. */
  settings?: Record<string, string>;
  createdAt?: string;
  status?: string;
  verdict?: string;
  command?: string;
  model?: string;
  backend?: string;
  target?: string;
  mode?: string;
  method?: string;
  samples?: number;
  fp32Bytes?: number;
  int8Bytes?: number;
  sizeRatio?: number;
  fp32Ms?: number;
  int8Ms?: number;
  /** Ratio of median latencies (fp32 / int8), with its 95% interval when recorded. */
  speedup?: number;
  speedupLow?: number;
  speedupHigh?: number;
  /** The two latencies came from different runtimes (e.g. TFLite int8 against TensorFlow.js fp32). */
  crossRuntime?: boolean;
  snrDb?: number;
  accuracyFp32?: number;
  accuracyInt8?: number;
  error?: string;
}

/** Core's containment test, the one every part of qforge uses for folders (resolveInsideFolder). */

/** Largest report.json the dashboard reads: real reports are kilobytes; bigger ones are refused, not parsed. */
export const MAX_REPORT_BYTES = 16 * 1024 * 1024;

/** An opened run file: a regular file with one link, checked on the open descriptor itself. */
export interface RunFile {
  fd: number;
  size: number;
}

/**
 * Opens `file` only if it is a regular file with a single link: no symlink (O_NOFOLLOW), no hard
 * link to something outside the runs folder (nlink > 1), no FIFO or device (O_NONBLOCK keeps the
 * open from waiting for a writer; fstat then refuses it). Returns the reason otherwise.
 */
export function openRunFile(file: string, maxBytes = Number.POSITIVE_INFINITY): RunFile | string {
  let st;
  try {
    st = lstatSync(file);
  } catch {
    return 'missing';
  }
  if (st.isSymbolicLink()) return 'is a symbolic link (refused)';
  if (!st.isFile()) return 'is not a regular file (refused)';
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    return `cannot be opened (${(e as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  const real = fstatSync(fd);
  const problem = !real.isFile() ? 'is not a regular file (refused)' : real.nlink > 1 ? 'is hard-linked elsewhere (refused)' : real.size > maxBytes ? `is ${real.size} bytes, over the ${maxBytes}-byte limit` : undefined;
  if (problem) {
    closeSync(fd);
    return problem;
  }
  return { fd, size: real.size };
}

function readAllAndClose(f: RunFile): string {
  try {
    const buf = Buffer.alloc(f.size);
    let at = 0;
    while (at < f.size) {
      const n = readSync(f.fd, buf, at, f.size - at, at);
      if (n <= 0) break;
      at += n;
    }
    return buf.subarray(0, at).toString('utf8');
  } finally {
    closeSync(f.fd);
  }
}

export class RunStore {
  readonly root: string;
  constructor(runsDir: string) {
    this.root = resolve(runsDir);
  }

  /** The folder of a run, or undefined when the id is malformed, missing or escapes the root. */
  runDir(id: string): string | undefined {
    if (!RUN_ID.test(id)) return undefined;
    const dir = join(this.root, id);
    try {
      if (!lstatSync(dir).isDirectory()) return undefined;
      if (!isInsideFolder(realpathSync(this.root), realpathSync(dir))) return undefined;
    } catch {
      return undefined;
    }
    return dir;
  }

  /** Opens an artifact of a run for serving (the caller closes it), or says why not. */
  openArtifact(id: string, name: string): RunFile | undefined {
    const dir = this.runDir(id);
    if (!dir || !(ARTIFACTS as readonly string[]).includes(name)) return undefined;
    const f = openRunFile(join(dir, name));
    return typeof f === 'string' ? undefined : f;
  }

  read(id: string): { report?: RunReport; problem?: string } {
    const dir = this.runDir(id);
    if (!dir) return { problem: 'no such run' };
    const file = join(dir, 'report.json');
    const f = openRunFile(file, MAX_REPORT_BYTES);
    if (f === 'missing') return { problem: 'report.json is missing (the run may still be writing)' };
    if (typeof f === 'string') return { problem: `report.json ${f}` };
    try {
      return { report: validateRunReport(JSON.parse(readAllAndClose(f)), file) };
    } catch (e) {
      // The message names the problem, never the file's contents.
      return { problem: e instanceof SyntaxError ? 'report.json is not valid JSON' : (e as Error).message.slice(0, 300) };
    }
  }

  list(): RunSummary[] {
    if (!existsSync(this.root)) return [];
    const out: RunSummary[] = [];
    for (const name of readdirSync(this.root)) {
      if (name.startsWith('.') || !RUN_ID.test(name) || !this.runDir(name)) continue;
      const { report, problem } = this.read(name);
      if (!report) {
        out.push({ id: name, damaged: true, problem });
        continue;
      }
      try {
        out.push(summarize(name, report));
      } catch (e) {
        // A schema-valid report can still lack what a row needs (e.g. `"verify": {}`).
        out.push({ id: name, damaged: true, problem: `report.json cannot be summarized: ${(e as Error).message.slice(0, 200)}` });
      }
    }
    labelRuns(out);
    return out.sort((a, b) => String(b.createdAt ?? '').localeCompare(String(a.createdAt ?? '')));
  }
}

/** Folder-free names that say nothing alone (every export is model.onnx): the parent folder joins them. */
const GENERIC_MODEL = /^(model|saved_model|graph|network|net)\.(onnx|json|tflite)$/i;

/** The model a run read, named so two models in different folders do not look alike. */
export function modelName(path: string): string {
  const parts = path.split(/[\\/]/).filter(Boolean);
  const base = parts.pop() ?? path;
  return GENERIC_MODEL.test(base) && parts.length ? `${parts.pop()}/${base}` : base;
}

/** Options that never tell runs apart usefully (paths and ids), left out of labels. */
const UNLABELED = new Set(['output', 'runsDir', 'model', 'command', 'qforgeVersion', 'startedAt', 'benchmarkRuns', 'calibTable']);

function settingsOf(r: RunReport): Record<string, string> {
  const out: Record<string, string> = { backend: r.backend.id, target: r.target.id };
  for (const [k, v] of Object.entries(r.options as Record<string, unknown>)) {
    if (UNLABELED.has(k) || v === undefined || v === null) continue;
    let text: string;
    if (typeof v === 'string') text = /[\\/]/.test(v) ? (v.split(/[\\/]/).filter(Boolean).pop() ?? v) : v;
    else if (typeof v === 'number' || typeof v === 'boolean') text = String(v);
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) text = v.join(',');
    else continue;
    out[k] = text.length > 40 ? `${text.slice(0, 39)}…` : text;
  }
  if (r.calibration?.sampleCount !== undefined) out.samples = String(r.calibration.sampleCount);
  return out;
}

/**
 * Names each run by its model plus the settings that differ among the runs of that model (a sweep's
 * rows then read "mnist-cnn.onnx · method=entropy samples=64" instead of the same name 12 times).
 */
export function labelRuns(runs: RunSummary[]): void {
  const groups = new Map<string, RunSummary[]>();
  // Runs of one model and one command compare; a sensitivity analysis is not a variant of a quantize run.
  for (const r of runs) if (!r.damaged && r.model) {
    const key = `${r.model}\0${String(r.command ?? '').split(' ')[0]}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const group of groups.values()) {
    const rank = (k: string) => (LABEL_ORDER.indexOf(k) < 0 ? LABEL_ORDER.length : LABEL_ORDER.indexOf(k));
    const keys = [...new Set(group.flatMap((r) => Object.keys(r.settings ?? {})))]
      .filter((k) => new Set(group.map((r) => r.settings?.[k] ?? '')).size > 1)
      .sort((a, b) => rank(a) - rank(b));
    for (const r of group) {
      const parts = keys.slice(0, 4).flatMap((k) => (r.settings?.[k] !== undefined ? [`${k}=${r.settings[k]}`] : []));
      const kind = String(r.command ?? '').split(' ')[0];
      r.label = [r.model, kind && kind !== 'quantize' ? kind : '', parts.join(' ')].filter(Boolean).join(' · ');
    }
  }
}

/** The options people vary most, first in labels. */
const LABEL_ORDER = ['mode', 'method', 'samples', 'data', 'target', 'backend', 'perChannel', 'activationType', 'weightType', 'reduceRange', 'format', 'excludeNodes', 'opTypes', 'biasCorrection', 'equalize'];

export function summarize(id: string, r: RunReport): RunSummary {
  const o = r.options as Record<string, unknown>;
  const out0 = r.verify?.outputs[0];
  return {
    id,
    damaged: false,
    createdAt: r.createdAt,
    status: r.status,
    verdict: r.verdict,
    command: r.command,
    model: modelName(String(r.input.path)),
    settings: settingsOf(r),
    backend: r.backend.id,
    target: r.target.id,
    mode: String(o.mode ?? (r.sensitivity ? 'sensitivity' : '')),
    method: r.calibration?.method ?? (o.mode === 'dynamic' ? '—' : String(o.method ?? '')),
    samples: r.calibration?.sampleCount,
    fp32Bytes: r.sizes?.inputBytes,
    int8Bytes: r.sizes?.outputBytes,
    sizeRatio: r.sizes?.ratio,
    fp32Ms: r.benchmark?.compare?.latencyMs.p50,
    int8Ms: r.benchmark?.primary.latencyMs.p50,
    speedup: r.benchmark?.speedup,
    speedupLow: r.benchmark?.speedupEstimate?.low,
    speedupHigh: r.benchmark?.speedupEstimate?.high,
    crossRuntime: r.benchmark?.crossRuntime ? true : undefined,
    snrDb: out0?.snrDb,
    accuracyFp32: r.verify?.accuracy?.reference,
    accuracyInt8: r.verify?.accuracy?.candidate,
    error: r.error ? `${r.error.code}: ${r.error.message}` : undefined,
  };
}
