// A run started from the dashboard page, as its child process executes it (started by `qforge dashboard`).
import { modelRef, resolveTargetProfile, type RunContext } from '@qforge/core';
import { serveRunInChild, type StartRunRequest } from '@qforge/dashboard';
import { imageOptions } from './flags';
import { buildRegistry } from './registry';
import { runAndRender } from './run';

export const BENCHMARK_RUNS = 50;

/** What the dashboard command hands each run's child: where runs go and where plugins are. */
export interface DashboardRunSettings {
  runsDir: string;
  dataDir?: string;
  pluginRoots?: string[];
  qforgeVersion: string;
}

/** Quotes a word for a POSIX shell only when it needs it. */
function shellWord(w: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, "'\\''")}'`;
}

/** The `qforge quantize …` command that reruns what the page asked for, recorded in the report. */
export function rerunCommand(req: StartRunRequest, runsDir: string): string {
  const words = ['qforge', 'quantize', req.model, '--backend', req.backend, '--target', req.target, '--mode', req.mode, '--data', req.data, '--samples', String(req.samples)];
  // `auto` is the CLI without --method: the target's method, which the searches may change.
  if (req.method !== 'auto') words.push('--method', req.method);
  if (req.evalData) words.push('--eval-data', req.evalData, '--eval-samples', String(req.evalSamples));
  for (const s of req.inputShape ?? []) words.push('--input-shape', s);
  const data: [string, string | undefined][] = [['--image-size', req.imageSize], ['--layout', req.layout], ['--mean', req.mean], ['--std', req.std], ['--resize', req.resize]];
  for (const [flag, v] of data) if (v) words.push(flag, v);
  words.push('--benchmark-runs', String(BENCHMARK_RUNS), '--runs-dir', runsDir);
  return words.map(shellWord).join(' ');
}

/** One dashboard run: the same pipeline as `qforge quantize`, with the backends the CLI would find. */
export async function runDashboardRequest(req: StartRunRequest, ctx: RunContext, settings: DashboardRunSettings): Promise<{ runId: string }> {
  const registry = buildRegistry({ dataDir: settings.dataDir, pluginRoots: settings.pluginRoots });
  const model = modelRef(req.model);
  const backend = await registry.resolve({ backend: req.backend, format: model.format, verb: 'quantize' });
  ctx.logger.debug(`dashboard run: ${model.path} with backend ${backend.id} in process ${process.pid}`);
  const dataFlags = { 'image-size': req.imageSize, layout: req.layout, mean: req.mean, std: req.std, resize: req.resize };
  const r = await runAndRender(
    backend,
    {
      model,
      runsDir: settings.runsDir,
      target: resolveTargetProfile(req.target),
      mode: req.mode,
      data: req.data,
      samples: req.samples,
      method: req.method === 'auto' ? undefined : req.method,
      evalData: req.evalData,
      evalSamples: req.evalSamples,
      benchmarkRuns: BENCHMARK_RUNS,
      image: imageOptions(dataFlags),
      inputShapes: req.inputShape ?? [],
      command: rerunCommand(req, settings.runsDir).slice('qforge '.length),
      qforgeVersion: settings.qforgeVersion,
    },
    ctx,
  );
  return { runId: r.report.runId };
}

// Started as a child process by the dashboard: serve the one run the server sends.
if (require.main === module) serveRunInChild((req, ctx, settings) => runDashboardRequest(req, ctx, settings as DashboardRunSettings));
