// Progress bars on stderr (never stdout, so --json stays clean); silent when stderr is not a terminal.
import { SingleBar, Presets } from 'cli-progress';
import { createRunContext, type Logger, type ProgressEvent, type RunContext } from '@qforge/core';

export function cliRunContext(options: { quiet?: boolean; verbose?: boolean } = {}): { ctx: RunContext; stop: () => void } {
  const tty = Boolean(process.stderr.isTTY) && !options.quiet;
  let bar: SingleBar | undefined;
  let phase = '';
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  const progress = (e: ProgressEvent) => {
    if (!tty) return;
    if (e.phase !== phase || !bar) {
      stop();
      phase = e.phase;
      if (e.total) {
        bar = new SingleBar({ stream: process.stderr, format: `${e.phase.padEnd(9)} [{bar}] {value}/{total} {eta_formatted}`, hideCursor: true, clearOnComplete: true }, Presets.shades_classic);
        bar.start(e.total, e.current);
      } else if (e.message) process.stderr.write(`${e.phase.padEnd(9)} ${e.message}\n`);
      return;
    }
    bar.update(e.current);
  };
  const logger: Logger = {
    debug: (m) => options.verbose && process.stderr.write(`debug: ${m}\n`),
    info: (m) => !options.quiet && process.stderr.write(`${m}\n`),
    warn: (m) => process.stderr.write(`warning: ${m}\n`),
  };
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  return { ctx: createRunContext({ progress, logger, signal: controller.signal }), stop };
}
