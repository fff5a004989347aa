// The base every qforge command extends: --json, coded errors with hints, exit codes, the registry.
import { existsSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, Flags, type Interfaces } from '@oclif/core';
import { QforgeError, isQforgeError, toQforgeError, type BackendRegistry } from '@qforge/core';
import { CANCEL_SIGNALS, cancelSignal, writeDebug } from './progress';
import { buildRegistry } from './registry';

/** oclif's parsed flags and args (its FlagOutput/ArgOutput, which it does not export). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ParsedValues = { [name: string]: any };

export type QforgeFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof QforgeCommand)['baseFlags'] & T['flags']>;

export abstract class QforgeCommand extends Command {
  static enableJsonFlag = true;
  static baseFlags = {
    verbose: Flags.boolean({ description: 'Print debug details to stderr.', default: false, helpGroup: 'GLOBAL' }),
  };

  private registryCache?: BackendRegistry;
  /** --verbose: debug lines on stderr (set when the command parses its flags). */
  protected verbose = false;
  private readonly startedAt = Date.now();

  protected get registry(): BackendRegistry {
    this.registryCache ??= buildRegistry({ dataDir: this.config.dataDir, pluginRoots: this.config.getPluginsList().filter((p) => p.type !== 'core').map((p) => p.root), debug: (m) => this.logDebug(m) });
    return this.registryCache;
  }

  /** A `debug: …` line on stderr with --verbose (stderr, so --json output stays clean). */
  protected logDebug(message: string): void {
    if (this.verbose) writeDebug(message);
  }

  /** Parses as oclif does, then (with --verbose) says what the arguments resolved to. */
  protected async parse<F extends ParsedValues, B extends ParsedValues, A extends ParsedValues>(options?: Interfaces.Input<F, B, A>, argv?: string[]): Promise<Interfaces.ParserOutput<F, B, A>> {
    const parsed = await super.parse(options, argv);
    this.verbose = Boolean((parsed.flags as { verbose?: boolean }).verbose);
    if (this.verbose) {
      this.logDebug(`qforge ${this.config.version} (node ${process.version}, ${process.platform}-${process.arch}), command ${this.id ?? '?'}, cwd ${process.cwd()}`);
      const paths = Object.entries({ ...(parsed.args as Record<string, unknown>), ...(parsed.flags as Record<string, unknown>) }).filter(([name, v]) => typeof v === 'string' && (name in (parsed.args as object) || PATH_FLAGS.has(name)));
      for (const [name, v] of paths as [string, string][]) this.logDebug(`${name}: ${v} → ${describePath(v)}`);
    }
    return parsed;
  }

  protected async finally(err: Error | undefined): Promise<unknown> {
    const exit = (err as { oclif?: { exit?: number } } | undefined)?.oclif?.exit;
    this.logDebug(`${this.id ?? 'command'} ${!err ? 'finished' : exit !== undefined ? `exited with ${exit}` : 'failed'} after ${Date.now() - this.startedAt} ms`);
    return super.finally(err);
  }

  /** Coded errors: message and hint on stderr (or one JSON object on stdout with --json), exit 2. */
  protected async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (err.oclif?.exit !== undefined && !isQforgeError(err) && /EEXIT/.test(String((err as { code?: string }).code))) throw err;
    // oclif's own parse errors (unknown flag, bad value, missing arg) become E_INVALID_OPTION, so
    // scripts get the same JSON error for them as for every other bad input.
    const coded = isQforgeError(err)
      ? err
      : (err as { oclif?: unknown }).oclif
        ? new QforgeError('E_INVALID_OPTION', err.message.split('\n')[0], { hint: `${err.message.split('\n').slice(1).join(' ').trim() || ''} See \`qforge ${this.id ?? '<command>'} --help\`.`.trim(), cause: err })
        : toQforgeError(err);
    const signal = coded.code === 'E_ABORTED' ? cancelSignal() : undefined;
    const exitCode = signal ? CANCEL_SIGNALS[signal] : 2;
    if (this.jsonEnabled()) {
      process.stdout.write(JSON.stringify({ error: coded.toJSON(), ...('runDir' in coded ? { runDir: (coded as { runDir?: string }).runDir } : {}) }, null, 2) + '\n');
    } else {
      this.logToStderr(`error ${coded.code}: ${coded.message}`);
      if (coded.hint) this.logToStderr(`hint: ${coded.hint}`);
      if ('runDir' in coded) this.logToStderr(`run directory (with the failure report): ${(coded as { runDir?: string }).runDir}`);
    }
    // The stack on stderr also with --json (stdout holds the JSON); the original error's, when it was wrapped.
    if ((this.verbose || this.argv.includes('--verbose')) && coded.stack) {
      const cause = coded.cause instanceof Error && coded.cause.stack ? `\ncaused by: ${coded.cause.stack}` : '';
      writeDebug(`${coded.stack}${cause}`);
    }
    return this.exit(exitCode);
  }
}

/** Flags that name files or folders: --verbose shows where each resolved. */
const PATH_FLAGS = new Set(['output', 'data', 'eval-data', 'runs-dir', 'calib-table', 'compare', 'charset']);

/** A path as the command will read it: absolute, through symlinks, or a built-in dataset name. */
function describePath(v: string): string {
  if (/^(mnist|random)(:|$)/.test(v)) return 'built-in dataset';
  const abs = resolve(v);
  if (!existsSync(abs)) return `${abs} (does not exist yet)`;
  const real = realpathSync(abs);
  return real === abs ? abs : `${abs} (symlink to ${real})`;
}
