// `qforge worker`: takes trials (sweep cells, sensitivity and search candidates) from a Redis queue until stopped (docs/scale-out.md).
import { Flags } from '@oclif/core';
import { errInvalidOption } from '@qforge/core';
import { formatMachine, redactQueueUrl, startTrialWorker } from '@qforge/queue';
import { QforgeCommand } from '../lib/base';
import { trialHandlers } from '../lib/queue';

export default class Worker extends QforgeCommand {
  static summary = 'Run queued trials (sweep cells, sensitivity and accuracy-search candidates) from a Redis queue; stop with Ctrl+C or SIGTERM.';
  static description = `Takes one trial at a time (or --concurrency). A sweep cell runs calibrate → quantize → verify → benchmark with the job's backend and options and writes its run directory into the shared runs folder the job names; a sensitivity or search candidate is quantized with the calibration table the job names and verified, and only its score goes back. Model and data are read at the paths the queuing command used, so every machine needs the same shared folder; a model whose SHA-256 differs from the queued one is refused.
SIGINT/SIGTERM hands the trial in progress back to the queue (another worker starts it again) and exits 0; a second signal exits at once. A worker killed outright loses its lock after --lock-ms, and another worker takes the trial over.`;
  static examples = ['<%= config.bin %> worker --queue redis://10.0.0.5:6379 --name gpu-box-1', '<%= config.bin %> worker --queue redis://:$REDIS_PASSWORD@10.0.0.5:6379 --concurrency 2'];
  static flags = {
    queue: Flags.string({ description: 'The Redis queue: redis://[:password@]host:port[/db] (rediss:// for TLS).', required: true }),
    concurrency: Flags.integer({ description: 'Trials this worker runs at once (each benchmarks while the others compute: keep 1 for speed figures).', default: 1 }),
    name: Flags.string({ description: 'Worker name shown in progress and recorded in every result (default: host-pid).' }),
    'lock-ms': Flags.integer({ description: 'How long a trial stays locked without renewal; a killed worker\'s trial is taken over after about twice this. Must exceed the longest pause of a trial.', default: 30000 }),
  };

  async run(): Promise<{ worker: string; trials: number }> {
    const { flags } = await this.parse(Worker);
    if (!(flags.concurrency >= 1 && flags.concurrency <= 64)) throw errInvalidOption('--concurrency', `${flags.concurrency} is not in 1..64`);
    if (!(flags['lock-ms'] >= 1000 && flags['lock-ms'] <= 3_600_000)) throw errInvalidOption('--lock-ms', `${flags['lock-ms']} is not in 1000..3600000`);
    let trials = 0;
    const worker = await startTrialWorker({
      url: flags.queue,
      name: flags.name,
      concurrency: flags.concurrency,
      lockMs: flags['lock-ms'],
      handlers: trialHandlers(this.registry, this.config.version),
      log: (line) => {
        if (/ done in /.test(line)) trials++;
        process.stderr.write(`${line}\n`);
      },
    });
    process.stderr.write(`worker ${formatMachine(worker.machine)} waiting for trials on ${redactQueueUrl(flags.queue)}\n`);
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(signal === 'SIGINT' ? 130 : 143);
      stopping = true;
      process.stderr.write(`${signal}: handing the trial in progress back to the queue (send it again to stop at once)\n`);
      void worker.release();
    };
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
    await worker.closed;
    process.stderr.write(`worker ${worker.machine.worker} stopped after ${trials} trial(s)\n`);
    return { worker: worker.machine.worker, trials };
  }
}
