import { resolve } from 'node:path';
import { Flags } from '@oclif/core';
import { childRunLauncher, isLoopbackHost, startDashboard } from '@qforge/dashboard';
import { checkQueueReachable } from '@qforge/queue';
import { QforgeCommand } from '../lib/base';
import { dashboardTrialSource } from '../lib/queue';
import type { DashboardRunSettings } from '../lib/dashboard-runner';

export { rerunCommand } from '../lib/dashboard-runner';

export default class Dashboard extends QforgeCommand {
  static summary = 'Serve the dashboard over a runs folder: list, inspect, compare and start runs in the browser.';
  static description = `Binds to 127.0.0.1 by default and answers only requests addressed to it (Host check). Open the printed URL: it carries a per-launch token, and starting a run needs it. Runs started from the page wait in a queue and run one at a time.
Each run executes in its own process, so a run that crashes fails alone; stopping the dashboard (Ctrl+C, SIGTERM) stops runs in progress.
The server reads only inside --runs-dir; runs started from the page may read models and data only inside --allow folders.`;
  static examples = ['<%= config.bin %> dashboard', '<%= config.bin %> dashboard --runs-dir ./qforge-runs --allow ./models --allow ./data --port 8080'];
  static enableJsonFlag = false;
  static flags = {
    'runs-dir': Flags.string({ description: 'Runs folder to serve.', default: './qforge-runs' }),
    port: Flags.integer({ description: 'Port (0 picks a free one).', default: 4600 }),
    host: Flags.string({ description: 'Address to bind; anything but loopback needs --unsafe-expose.', default: '127.0.0.1' }),
    'unsafe-expose': Flags.boolean({ description: 'Allow --host other than loopback: other machines can then read your runs (starting runs still needs the token).', default: false }),
    allow: Flags.string({ description: 'Folder runs started from the page may read models/data from (repeatable).', multiple: true, default: ['.'] }),
    queue: Flags.string({ description: 'Show the queued trials of this runs folder (waiting, running, finished) from this Redis queue (redis://host:port); without it the page shows what the runs folder holds of them.', helpGroup: 'SCALE-OUT' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Dashboard);
    const runsDir = resolve(flags['runs-dir']);
    const registry = this.registry;
    // Each run executes in its own child process: a run that crashes or exits fails alone, the server stays up.
    const settings: DashboardRunSettings = { runsDir, dataDir: this.config.dataDir, pluginRoots: this.config.getPluginsList().filter((p) => p.type !== 'core').map((p) => p.root), qforgeVersion: this.config.version };
    const launch = childRunLauncher({ module: require.resolve('../lib/dashboard-runner'), init: settings, runsDir });
    if (!isLoopbackHost(flags.host) && flags['unsafe-expose']) {
      this.warn(`--unsafe-expose: serving ${flags.host}; every machine that can reach it can read the runs in ${runsDir} and the folder names under --allow, and the Host check is off.`);
    }
    // The form offers only backends that can run here: picking one that cannot only fails later.
    const available: string[] = [];
    for (const id of registry.ids()) if ((await registry.detect(id)).available) available.push(id);
    if (flags.queue) await checkQueueReachable(flags.queue);
    const trials = flags.queue ? dashboardTrialSource(flags.queue, runsDir) : undefined;
    const d = await startDashboard({ runsDir, allow: flags.allow, host: flags.host, port: flags.port, unsafeExpose: flags['unsafe-expose'], launch, backends: ['auto', ...available], trials });
    this.log(`qforge dashboard on ${d.openUrl}\n(runs: ${runsDir}; readable: ${flags.allow.map((a) => resolve(a)).join(', ')}) — Ctrl+C to stop`);
    await new Promise<void>((done) => {
      const stop = () => void d.close().then(done);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  }
}
