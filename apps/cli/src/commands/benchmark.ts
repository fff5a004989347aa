import { Args, Flags } from '@oclif/core';
import { DEFAULT_BENCH_MAX_RUNS, DEFAULT_BENCH_MIN_TIME_MS, formatSpeedup, modelRef, openDataset, withInputShapes, type BenchmarkResult } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { backendFlag, imageFlags, imageOptions, positiveInt } from '../lib/flags';
import { cliRunContext } from '../lib/progress';

export default class Benchmark extends QforgeCommand {
  static summary = 'Measure latency, throughput, load time and memory; with --compare, two models alternately in one run.';
  static examples = ['<%= config.bin %> benchmark model.int8.onnx --compare model.onnx --threads 1 --runs 200'];
  static args = { model: Args.string({ description: 'Model file.', required: true }) };
  static flags = {
    compare: Flags.string({ description: 'A second model measured in the same run (ratio reported).' }),
    threads: Flags.integer({ description: 'Intra-op threads.', default: 1 }),
    warmup: Flags.integer({ description: 'Untimed warm-up runs.', default: 10 }),
    runs: Flags.integer({ description: 'Timed runs per model, at least.', default: 30 }),
    'min-time': Flags.integer({ description: 'Keep measuring until each model has this much timed latency (ms); 0 runs exactly --runs.', default: DEFAULT_BENCH_MIN_TIME_MS }),
    'max-runs': Flags.integer({ description: 'Timed runs per model at most, whatever --min-time asks (--runs wins over it).', default: DEFAULT_BENCH_MAX_RUNS }),
    data: Flags.string({ char: 'd', description: 'Feed the first sample of this dataset instead of fixed random inputs.' }),
    backend: backendFlag,
    ...imageFlags,
  };

  async run(): Promise<BenchmarkResult> {
    const { args, flags } = await this.parse(Benchmark);
    const model = modelRef(args.model);
    const compare = flags.compare ? modelRef(flags.compare) : undefined;
    const backend = await this.registry.resolve({ backend: flags.backend, format: model.format, verb: 'benchmark' });
    const { ctx, stop } = cliRunContext({ verbose: this.verbose });
    const shapes = flags['input-shape'] ?? [];
    const dataSpec = flags.data ?? (shapes.length ? 'random' : undefined);
    const dataset = dataSpec ? openDataset(dataSpec, { inputs: withInputShapes(await backend.modelInputs(model, ctx), shapes), image: imageOptions(flags) }) : undefined;
    const r = await backend
      .benchmark(
        model,
        { threads: positiveInt('threads', flags.threads), warmup: Math.max(0, flags.warmup), runs: positiveInt('runs', flags.runs), minTimeMs: flags['min-time'] === 0 ? 0 : positiveInt('min-time', flags['min-time'], 600_000), maxRuns: positiveInt('max-runs', flags['max-runs']), dataset, compare },
        ctx,
      )
      .finally(stop);
    const line = (name: string, b: BenchmarkResult['primary']) =>
      `${name.padEnd(8)} mean ${b.latencyMs.mean.toFixed(3)} ms  p50 ${b.latencyMs.p50.toFixed(3)}  p90 ${b.latencyMs.p90.toFixed(3)}  p99 ${b.latencyMs.p99.toFixed(3)}  std ${b.latencyMs.std.toFixed(3)}  ${b.throughputPerSec.toFixed(1)}/s  load ${b.loadTimeMs.toFixed(1)} ms`;
    const measuredS = (r.primary.latencyMs.samples.reduce((a, b) => a + b, 0) + (r.compare?.latencyMs.samples.reduce((a, b) => a + b, 0) ?? 0)) / 1000;
    this.log(`${r.runtime}, ${flags.threads} thread(s), ${r.primary.latencyMs.count} runs per model${r.compare ? ', alternated' : ''} after ${flags.warmup} warm-up (${measuredS.toFixed(1)} s timed)`);
    if (r.inputShapes) this.log(`inputs   ${Object.entries(r.inputShapes).map(([k, d]) => `${k} ${d.length ? d.join('×') : 'scalar'}`).join(', ')}`);
    this.log(line('model', r.primary));
    if (r.compare) {
      this.log(line('compare', r.compare));
      this.log(`speedup  ${formatSpeedup(r.speedupEstimate ?? r.speedup)}: compare median / model median, interval from a paired bootstrap`);
      if (r.crossRuntime) this.log(`         cross-runtime: ${r.crossRuntime.primary} against ${r.crossRuntime.compare}, not the same runtime with and without int8`);
    }
    return r;
  }
}
