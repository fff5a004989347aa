import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { METRIC_KINDS, deriveTable, errInvalidOption, modelRef, readRunReport, score, type MetricKind, openDataset, resolveTargetProfile, withInputShapes, writeCalibrationTable, type CalibrationMethod, type RunReport } from '@qforge/core';
import { describeMachine, runTrials, type TrialRequest } from '@qforge/queue';
import { QforgeCommand } from '../lib/base';
import { backendFlag, imageFlags, imageOptions, list, targetFlag, taskFlags, taskOptions } from '../lib/flags';
import { cliRunContext } from '../lib/progress';
import { TRIAL_KIND, formatMachine, machineKey, mixedSpeedMachines, queueFlag, queueStatusPrinter, type QueuedRunResult, type TrialRecipe } from '../lib/queue';
import { runAndRender } from '../lib/run';

export interface SweepRow {
  runDir: string;
  samples: number;
  method: string;
  perChannel: boolean;
  verdict: string;
  accuracy?: number;
  accuracyDrop?: number;
  snrDb?: number;
  sizeRatio?: number;
  speedup?: number;
  /** The `--criterion` task metric (higher is better: drops and errors negated), when one was chosen. */
  score?: number;
  best: boolean;
  /** The machine that ran the trial and measured its speedup (worker@host, CPU, flags, threads). */
  machine?: string;
  /** Same host and CPU: speedups compare only between rows with the same key. */
  machineKey?: string;
  /** A queued trial that failed after its attempts: the cause (`E_…: message`). */
  error?: string;
}

const METHODS = ['minmax', 'percentile', 'entropy', 'mse'];

export default class Sweep extends QforgeCommand {
  static summary = 'Quantize over a grid of sample counts, methods and granularities; one run each, best marked.';
  static description = 'Calibrates once per sample count (keeping histograms) and derives every method from those statistics, so the grid costs one calibration per sample count.';
  static examples = ['<%= config.bin %> sweep model.onnx --data mnist:calib --eval-data mnist:test --samples 8,16,32,64 --method minmax,entropy,percentile,mse'];
  static args = { model: Args.string({ description: 'Model file.', required: true }) };
  static flags = {
    data: Flags.string({ char: 'd', description: 'Calibration dataset.', required: true }),
    'eval-data': Flags.string({ description: 'Evaluation dataset (default: the calibration data).' }),
    samples: Flags.string({ description: 'Comma-separated calibration sample counts.', default: '8,16,32,64' }),
    method: Flags.string({ description: 'Comma-separated methods.', default: 'minmax,percentile,entropy,mse' }),
    'per-channel': Flags.string({ description: 'on, off or both.', options: ['on', 'off', 'both'], default: 'on' }),
    'eval-samples': Flags.integer({ description: 'Evaluation samples per run.', default: 200 }),
    criterion: Flags.string({ description: 'What "best" means: accuracy, snr, speedup, size, or a task metric (iou, line-acc-drop, top1-agree, …; docs/verification.md).', options: ['accuracy', 'snr', 'speedup', 'size', ...METRIC_KINDS.filter((m) => m !== 'snr')], default: 'accuracy' }),
    'benchmark-runs': Flags.integer({ description: 'Timed runs per model per combination.', default: 50 }),
    'runs-dir': Flags.string({ description: 'Where run directories go.', default: './qforge-runs' }),
    queue: queueFlag,
    backend: backendFlag,
    target: targetFlag,
    ...taskFlags,
    ...imageFlags,
  };

  async run(): Promise<{ rows: SweepRow[]; criterion: string; speedMachines?: string[] }> {
    const { args, flags } = await this.parse(Sweep);
    const model = modelRef(args.model);
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'quantize' });
    const target = resolveTargetProfile(flags.target, undefined, backend.capabilities.targets);
    const counts = list(flags.samples).map(Number);
    const task = taskOptions(flags);
    const metric = (METRIC_KINDS as readonly string[]).includes(flags.criterion) && flags.criterion !== 'snr' ? (flags.criterion as MetricKind) : undefined;
    const methods = list(flags.method);
    if (counts.some((n) => !Number.isInteger(n) || n < 1)) throw errInvalidOption('--samples', `"${flags.samples}" is not a list of positive integers`);
    const unknown = methods.filter((m) => !METHODS.includes(m));
    if (unknown.length) throw errInvalidOption('--method', `unknown method(s) ${unknown.join(', ')}`, `Use ${METHODS.join(', ')}.`);
    const granularities = flags['per-channel'] === 'both' ? [true, false] : [flags['per-channel'] === 'on'];
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    const scratch = mkdtempSync(join(tmpdir(), 'qforge-sweep-'));
    const rows: SweepRow[] = [];
    const local = describeMachine('local');
    const toRow = (runDir: string, rep: RunReport, samples: number, method: string, perChannel: boolean, machine = local): SweepRow => {
      const o = rep.verify?.outputs[0];
      return {
        runDir,
        samples,
        method,
        perChannel,
        verdict: rep.verdict,
        accuracy: rep.verify?.accuracy?.candidate,
        accuracyDrop: rep.verify?.accuracy?.dropPoints,
        snrDb: o ? o.preActivation?.snrDb ?? o.snrDb : undefined,
        ...(metric && rep.verify ? { score: score(rep.verify, metric) } : {}),
        sizeRatio: rep.sizes?.ratio,
        speedup: rep.benchmark?.speedup,
        best: false,
        machine: formatMachine(machine),
        machineKey: machineKey(machine),
      };
    };
    try {
      const inputs = withInputShapes(await backend.modelInputs(model, ctx), flags['input-shape'] ?? []);
      const image = imageOptions(flags);
      if (flags.queue) {
        // The same grid, one run trial per cell; each worker calibrates a sample count once and derives the methods.
        const requests: TrialRequest[] = [];
        const cells: { samples: number; method: string; perChannel: boolean }[] = [];
        const runsDir = resolve(flags['runs-dir']);
        for (const samples of counts)
          for (const method of methods)
            for (const perChannel of granularities) {
              const recipe: TrialRecipe = {
                backend: backend.id,
                target: target.id,
                calibration: { calibrate: { data: flags.data, samples, method: method as CalibrationMethod } },
                quantize: { perChannel },
                evaluation: { data: flags['eval-data'] ?? flags.data, samples: flags['eval-samples'], ...(task ? { task } : {}) },
                image,
                inputShapes: flags['input-shape'] ?? [],
                outcome: { kind: 'run', benchmarkRuns: flags['benchmark-runs'], command: `sweep samples=${samples} method=${method} per-channel=${perChannel}` },
              };
              cells.push({ samples, method, perChannel });
              requests.push({ kind: TRIAL_KIND, model: resolve(model.path), runsDir, label: `samples=${samples} method=${method} per-channel=${perChannel}`, spec: recipe });
            }
        stop();
        const printer = queueStatusPrinter();
        const outcomes = await runTrials<QueuedRunResult>(flags.queue, requests, { onStatus: printer.onStatus, onStalled: printer.onStalled }).finally(printer.done);
        for (const [i, o] of outcomes.entries()) {
          const { samples, method, perChannel } = cells[i];
          if (o.state === 'completed') rows.push(toRow(o.value.result.runDir, readRunReport(resolve(o.value.result.runDir, 'report.json')), samples, method, perChannel, o.value.machine));
          else rows.push({ runDir: '', samples, method, perChannel, verdict: 'error', best: false, error: o.reason });
        }
      }
      for (const samples of flags.queue ? [] : counts) {
        // One calibration per sample count; every method is derived from its histograms.
        const full = await backend.calibrate(model, openDataset(flags.data, { inputs, image }), { method: 'entropy', samples, target, keepHistograms: true }, ctx);
        for (const method of methods) {
          const table = deriveTable(full, method as CalibrationMethod);
          for (const t of Object.values(table.tensors)) delete t.histogram;
          const tablePath = join(scratch, `s${samples}-${method}.json`);
          await writeCalibrationTable(tablePath, table);
          // Cells differ only by calibration: no latency search rewriting op families or storage.
          for (const perChannel of granularities) {
            const r = await runAndRender(
              backend,
              { model, runsDir: flags['runs-dir'], target, calibTable: tablePath, perChannel, evalData: flags['eval-data'] ?? flags.data, evalSamples: flags['eval-samples'], task, benchmarkRuns: flags['benchmark-runs'], image, inputShapes: flags['input-shape'] ?? [], command: `sweep samples=${samples} method=${method} per-channel=${perChannel}`, qforgeVersion: this.config.version, latencySearch: false },
              ctx,
            );
            rows.push(toRow(r.runDir, r.report, samples, method, perChannel));
          }
        }
      }
    } finally {
      stop();
      rmSync(scratch, { recursive: true, force: true });
    }
    const key = (r: SweepRow) => (metric ? r.score ?? -Infinity : flags.criterion === 'accuracy' ? r.accuracy ?? r.snrDb ?? -Infinity : flags.criterion === 'snr' ? r.snrDb ?? -Infinity : flags.criterion === 'speedup' ? r.speedup ?? -Infinity : -(r.sizeRatio ?? Infinity));
    const ranked = rows.filter((r) => !r.error);
    const best = ranked.reduce((a, b) => (key(b) > key(a) ? b : a), ranked[0]);
    if (best) best.best = true;
    this.log(`${'samples'.padStart(7)}  ${'method'.padEnd(10)} ${'per-ch'.padEnd(6)} ${'accuracy'.padStart(9)} ${'SNR dB'.padStart(7)} ${'size'.padStart(6)} ${'speedup'.padStart(7)}  verdict`);
    for (const r of rows) {
      this.log(`${String(r.samples).padStart(7)}  ${r.method.padEnd(10)} ${(r.perChannel ? 'yes' : 'no').padEnd(6)} ${(r.accuracy !== undefined ? `${(r.accuracy * 100).toFixed(2)}%` : '—').padStart(9)} ${(r.snrDb?.toFixed(1) ?? '—').padStart(7)} ${(r.sizeRatio?.toFixed(3) ?? '—').padStart(6)} ${(r.speedup?.toFixed(2) ?? '—').padStart(7)}  ${r.verdict}${r.best ? `  ← best by ${flags.criterion}` : ''}${flags.queue && r.machine ? `  [${r.machine.split(' ')[0]}]` : ''}`);
    }
    for (const r of rows) if (r.error) this.logToStderr(`failed: samples=${r.samples} method=${r.method} per-channel=${r.perChannel}: ${r.error}`);
    // Each speedup was measured on one machine (fp32 and int8 alternately); across machines the column mixes hardware.
    const speedMachines = mixedSpeedMachines(rows);
    if (speedMachines.length) this.logToStderr(`warning: the speedup column mixes ${speedMachines.length} machines; compare speedups only between rows of one machine:\n  ${speedMachines.join('\n  ')}`);
    return { rows, criterion: flags.criterion, ...(speedMachines.length ? { speedMachines } : {}) };
  }
}
