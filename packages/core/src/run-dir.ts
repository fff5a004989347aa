// Run folders: checks that must pass before one is made, the hidden work folder, and its cleanup.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ModelRef } from './contract';
import { errCalibTableInvalid, errDatasetNotFound, errInvalidOption, errOutputUnwritable } from './errors';
import { assertRegularFile, checkOutputPath, modelInputFiles } from './files';

/**
 * A run is built in `.<id>.<pid>.partial` and renamed into place: readers never see half a run, and
 * the pid lets a later run tell a live writer from one that was killed.
 */
export function partialRunDirName(id: string, pid: number = process.pid): string {
  return `.${id}.${pid}.partial`;
}

const PARTIAL = /^\.(.+)\.(\d+)\.partial$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes work folders whose process is gone (killed, crashed); returns what was removed. */
export function removeStalePartials(runsDir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(runsDir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = PARTIAL.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || processAlive(pid)) continue;
    rmSync(join(runsDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

const active = new Set<string>();
let exitHookInstalled = false;

/** Creates the work folder of run `id` (after removing stale ones) and registers it for cleanup on exit. */
export function beginWorkDir(runsDir: string, id: string): string {
  const root = resolve(runsDir);
  const workDir = join(root, partialRunDirName(id));
  try {
    mkdirSync(root, { recursive: true });
    removeStalePartials(root);
    mkdirSync(workDir);
  } catch (e) {
    throw errOutputUnwritable(workDir, (e as Error).message, e);
  }
  active.add(workDir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Whatever ends the process (a signal handler's exit, an uncaught error), no work folder stays.
    process.on('exit', removeActiveWorkDirs);
  }
  return workDir;
}

/** The work folder was renamed into place (or removed): nothing left to clean. */
export function endWorkDir(workDir: string): void {
  active.delete(workDir);
}

/** Removes the work folders of runs still in progress; for signal handlers and process exit. */
export function removeActiveWorkDirs(): string[] {
  const removed = [...active];
  for (const dir of removed) {
    rmSync(dir, { recursive: true, force: true });
    active.delete(dir);
  }
  return removed;
}

const BUILTIN_DATA = /^(random|mnist)(:|$)/;

/** A dataset given as a path must exist; a single file must be a regular file. */
function checkDataPath(option: string, spec: string | object | undefined): string | undefined {
  if (typeof spec !== 'string' || BUILTIN_DATA.test(spec)) return undefined;
  const abs = resolve(spec);
  if (!existsSync(abs)) throw errDatasetNotFound(abs);
  if (statSync(abs).isDirectory()) return undefined;
  assertRegularFile(abs, `${option} file`);
  return abs;
}

function checkNumber(option: string, v: number | undefined, min: number, max: number, integer = false): void {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw errInvalidOption(option, `${v} is not ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`);
  }
}

/** What the pre-run checks read from the run options (a subset of QuantizeRunOptions). */
export interface RunPreflight {
  model: ModelRef;
  output?: string;
  mode: string;
  /** A dataset spec, or a Dataset object from the Node API (not a path: nothing to check). */
  data?: string | object;
  evalData?: string | object;
  calibTable?: string;
  samples?: number;
  evalSamples?: number;
  percentile?: number;
  maxFloatShare?: number;
  thresholds?: { minSnrDb?: number; maxAccuracyDropPoints?: number; minCosine?: number };
  /** Bias correction as the run will decide it (explicit or the target's default). */
  biasCorrection: boolean;
}

/**
 * Argument and path checks that need no model loading: run before the work folder exists, so a
 * wrong argument leaves no run folder behind.
 */
export function preflightRun(p: RunPreflight): void {
  if (p.mode === 'static' && !p.calibTable && !p.data) {
    throw errInvalidOption('--data', 'static quantization needs calibration data', 'Pass --data <dataset> (a folder, .npy, mnist or random), --calib-table <file>, or use --mode dynamic.');
  }
  if (p.biasCorrection && !p.data) throw errInvalidOption('--bias-correction', 'bias correction needs the calibration data', 'Pass --data along with --bias-correction.');
  checkNumber('--samples', p.samples, 1, MAX_SAMPLES, true);
  checkNumber('--eval-samples', p.evalSamples, 1, MAX_SAMPLES, true);
  if (p.percentile !== undefined && !(Number.isFinite(p.percentile) && p.percentile > 0 && p.percentile <= 100)) throw errInvalidOption('--percentile', `${p.percentile} is not a percentile in (0, 100]`);
  checkNumber('--max-float-share', p.maxFloatShare, 0, 1);
  checkNumber('--min-snr', p.thresholds?.minSnrDb, -1000, 1000);
  checkNumber('--max-acc-drop', p.thresholds?.maxAccuracyDropPoints, 0, 100);
  checkNumber('--min-cosine', p.thresholds?.minCosine, -1, 1);
  const dataFiles = [checkDataPath('--data', p.data), checkDataPath('--eval-data', p.evalData)];
  if (p.calibTable) {
    const table = resolve(p.calibTable);
    if (!existsSync(table)) throw errCalibTableInvalid(table, 'the file does not exist');
    assertRegularFile(table, 'calibration table');
    dataFiles.push(table);
  }
  if (p.output) checkOutputPath(p.output, [...modelInputFiles(p.model), ...dataFiles.filter((f): f is string => Boolean(f))]);
}

/** Most samples a run may ask for: more is a typo, not a dataset (MNIST has 10,000). */
export const MAX_SAMPLES = 10_000_000;
