// The base every qforge command extends: --json, coded errors with hints, exit codes, the registry.
import { Command, Flags, type Interfaces } from '@oclif/core';
import { QforgeError, isQforgeError, toQforgeError, type BackendRegistry } from '@qforge/core';
import { CANCEL_SIGNALS, cancelSignal } from './progress';
import { buildRegistry } from './registry';

export type QforgeFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof QforgeCommand)['baseFlags'] & T['flags']>;

export abstract class QforgeCommand extends Command {
  static enableJsonFlag = true;
  static baseFlags = {
    verbose: Flags.boolean({ description: 'Print debug details to stderr.', default: false, helpGroup: 'GLOBAL' }),
  };

  private registryCache?: BackendRegistry;

  protected get registry(): BackendRegistry {
    this.registryCache ??= buildRegistry({ dataDir: this.config.dataDir, pluginRoots: this.config.getPluginsList().filter((p) => p.type !== 'core').map((p) => p.root) });
    return this.registryCache;
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
      if (this.argv.includes('--verbose') && coded.stack) this.logToStderr(coded.stack);
    }
    return this.exit(exitCode);
  }
}
