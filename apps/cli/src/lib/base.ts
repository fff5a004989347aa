// The base every qforge command extends: --json, coded errors with hints, exit codes, the registry.
import { Command, Flags, type Interfaces } from '@oclif/core';
import { isQforgeError, toQforgeError, type BackendRegistry } from '@qforge/core';
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
    // oclif's own parse errors (unknown flag, missing arg) keep oclif's message but exit 2 like ours.
    const coded = isQforgeError(err) ? err : (err as { oclif?: unknown }).oclif ? undefined : toQforgeError(err);
    if (!coded) {
      this.logToStderr(`error: ${err.message}`);
      return this.exit(2);
    }
    if (this.jsonEnabled()) {
      process.stdout.write(JSON.stringify({ error: coded.toJSON(), ...('runDir' in coded ? { runDir: (coded as { runDir?: string }).runDir } : {}) }, null, 2) + '\n');
    } else {
      this.logToStderr(`error ${coded.code}: ${coded.message}`);
      if (coded.hint) this.logToStderr(`hint: ${coded.hint}`);
      if ('runDir' in coded) this.logToStderr(`run directory (with the failure report): ${(coded as { runDir?: string }).runDir}`);
      if (this.argv.includes('--verbose') && coded.stack) this.logToStderr(coded.stack);
    }
    return this.exit(2);
  }
}
