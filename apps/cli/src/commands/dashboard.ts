import { resolve } from 'node:path';
import { Flags } from '@oclif/core';
import { modelRef, resolveTargetProfile, type RunContext } from '@qforge/core';
import { isLoopbackHost, startDashboard, type StartRunRequest } from '@qforge/dashboard';
import { QforgeCommand } from '../lib/base';
import { imageOptions } from '../lib/flags';
import { runAndRender } from '../lib/run';

const BENCHMARK_RUNS = 50;

/** Quotes a word for a POSIX shell only when it needs it. */
function shellWord(w: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, "'\\''")}'`;
}

/** The `qforge quantize …` command that reruns what the page asked for, recorded in the report. */
export function rerunCommand(req: StartRunRequest, runsDir: string): string {
  const words = ['qforge', 'quantize', req.model, '--backend', req.backend, '--target', req.target, '--mode', req.mode, '--data', req.data, '--samples', String(req.samples), '--method', req.method];
  if (req.evalData) words.push('--eval-data', req.evalData, '--eval-samples', String(req.evalSamples));
  for (const s of req.inputShape ?? []) words.push('--input-shape', s);
  const data: [string, string | undefined][] = [['--image-size', req.imageSize], ['--layout', req.layout], ['--mean', req.mean], ['--std', req.std], ['--resize', req.resize]];
  for (const [flag, v] of data) if (v) words.push(flag, v);
  words.push('--benchmark-runs', String(BENCHMARK_RUNS), '--runs-dir', runsDir);
  return words.map(shellWord).join(' ');
}

export default class Dashboard extends QforgeCommand {
  static summary = 'Serve the dashboard over a runs folder: list, inspect, compare and start runs in the browser.';
  static description = `Binds to 127.0.0.1 by default and answers only requests addressed to it (Host check). Open the printed URL: it carries a per-launch token, and starting a run needs it. Runs started from the page wait in a queue and run one at a time.
The server reads only inside --runs-dir; runs started from the page may read models and data only inside --allow folders.`;
  static examples = ['<%= config.bin %> dashboard', '<%= config.bin %> dashboard --runs-dir ./qforge-runs --allow ./models --allow ./data --port 8080'];
  static enableJsonFlag = false;
  static flags = {
    'runs-dir': Flags.string({ description: 'Runs folder to serve.', default: './qforge-runs' }),
    port: Flags.integer({ description: 'Port (0 picks a free one).', default: 4600 }),
    host: Flags.string({ description: 'Address to bind; anything but loopback needs --unsafe-expose.', default: '127.0.0.1' }),
    'unsafe-expose': Flags.boolean({ description: 'Allow --host other than loopback: other machines can then read your runs (starting runs still needs the token).', default: false }),
    allow: Flags.string({ description: 'Folder runs started from the page may read models/data from (repeatable).', multiple: true, default: ['.'] }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Dashboard);
    const runsDir = resolve(flags['runs-dir']);
    const registry = this.registry;
    const launch = async (req: StartRunRequest, ctx: RunContext) => {
      const model = modelRef(req.model);
      const backend = await registry.resolve({ backend: req.backend, format: model.format, verb: 'quantize' });
      const dataFlags = { 'image-size': req.imageSize, layout: req.layout, mean: req.mean, std: req.std, resize: req.resize };
      const r = await runAndRender(
        backend,
        {
          model,
          runsDir,
          target: resolveTargetProfile(req.target),
          mode: req.mode,
          data: req.data,
          samples: req.samples,
          method: req.method,
          evalData: req.evalData,
          evalSamples: req.evalSamples,
          benchmarkRuns: BENCHMARK_RUNS,
          image: imageOptions(dataFlags),
          inputShapes: req.inputShape ?? [],
          command: rerunCommand(req, runsDir).slice('qforge '.length),
          qforgeVersion: this.config.version,
        },
        ctx,
      );
      return { runId: r.report.runId };
    };
    if (!isLoopbackHost(flags.host) && flags['unsafe-expose']) {
      this.warn(`--unsafe-expose: serving ${flags.host}; every machine that can reach it can read the runs in ${runsDir} and the folder names under --allow, and the Host check is off.`);
    }
    // The form offers only backends that can run here: picking one that cannot only fails later.
    const available: string[] = [];
    for (const id of registry.ids()) if ((await registry.detect(id)).available) available.push(id);
    const d = await startDashboard({ runsDir, allow: flags.allow, host: flags.host, port: flags.port, unsafeExpose: flags['unsafe-expose'], launch, backends: ['auto', ...available] });
    this.log(`qforge dashboard on ${d.openUrl}\n(runs: ${runsDir}; readable: ${flags.allow.map((a) => resolve(a)).join(', ')}) — Ctrl+C to stop`);
    await new Promise<void>((done) => {
      const stop = () => void d.close().then(done);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  }
}
