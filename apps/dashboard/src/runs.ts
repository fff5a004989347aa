// Reading run directories safely: only inside the runs folder, never through symlinks out of it.
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { validateRunReport, type RunReport } from '@qforge/core';

/** Run ids are folder names qforge made: letters, digits, dot, dash, underscore. */
export const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
/** Artifacts a run folder may serve. */
export const ARTIFACTS = ['report.json', 'summary.txt', 'calibration.json', 'report.html', 'model.int8.onnx', 'model.int8.tflite'] as const;

export interface RunSummary {
  id: string;
  damaged: boolean;
  problem?: string;
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
  speedup?: number;
  snrDb?: number;
  accuracyFp32?: number;
  accuracyInt8?: number;
  error?: string;
}

export function inside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
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
    if (!existsSync(dir) || lstatSync(dir).isSymbolicLink() || !statSync(dir).isDirectory()) return undefined;
    if (!existsSync(this.root) || !inside(realpathSync(this.root), realpathSync(dir))) return undefined;
    return dir;
  }

  artifactPath(id: string, name: string): string | undefined {
    const dir = this.runDir(id);
    if (!dir || !(ARTIFACTS as readonly string[]).includes(name)) return undefined;
    const file = join(dir, name);
    if (!existsSync(file) || lstatSync(file).isSymbolicLink()) return undefined;
    return file;
  }

  read(id: string): { report?: RunReport; problem?: string } {
    const dir = this.runDir(id);
    if (!dir) return { problem: 'no such run' };
    const file = join(dir, 'report.json');
    if (!existsSync(file)) return { problem: 'report.json is missing (the run may still be writing)' };
    try {
      return { report: validateRunReport(JSON.parse(readFileSync(file, 'utf8')), file) };
    } catch (e) {
      return { problem: (e as Error).message };
    }
  }

  list(): RunSummary[] {
    if (!existsSync(this.root)) return [];
    const out: RunSummary[] = [];
    for (const name of readdirSync(this.root)) {
      if (name.startsWith('.') || !RUN_ID.test(name) || !this.runDir(name)) continue;
      const { report, problem } = this.read(name);
      out.push(report ? summarize(name, report) : { id: name, damaged: true, problem });
    }
    return out.sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''));
  }
}

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
    model: r.input.path.split('/').pop(),
    backend: r.backend.id,
    target: r.target.id,
    mode: String(o.mode ?? (r.sensitivity ? 'sensitivity' : '')),
    method: r.calibration?.method ?? (o.mode === 'dynamic' ? '—' : String(o.method ?? '')),
    samples: r.calibration?.sampleCount,
    fp32Bytes: r.sizes?.inputBytes,
    int8Bytes: r.sizes?.outputBytes,
    sizeRatio: r.sizes?.ratio,
    fp32Ms: r.benchmark?.compare?.latencyMs.mean,
    int8Ms: r.benchmark?.primary.latencyMs.mean,
    speedup: r.benchmark?.speedup,
    snrDb: out0?.snrDb,
    accuracyFp32: r.verify?.accuracy?.reference,
    accuracyInt8: r.verify?.accuracy?.candidate,
    error: r.error ? `${r.error.code}: ${r.error.message}` : undefined,
  };
}
