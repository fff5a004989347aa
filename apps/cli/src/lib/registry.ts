// Builds the backend registry the CLI uses: the bundled backends, then any discovered plugin.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BackendRegistry, discoverPlugins, type Backend, type BackendFactory } from '@qforge/core';
import { backendFactory as akida } from '@qforge/backend-akida';
import { backendFactory as onnxruntime } from '@qforge/backend-onnxruntime';
import { backendFactory as tfjs } from '@qforge/backend-tfjs';
import { backendFactory as tvm } from '@qforge/backend-tvm';

export const BUNDLED_BACKENDS: BackendFactory[] = [onnxruntime, tfjs, akida, tvm];

/** node_modules folders from `dir` up to the root: where a project's installed plugins live. */
function ancestorsNodeModules(dir: string): string[] {
  const out: string[] = [];
  let d = resolve(dir);
  for (;;) {
    out.push(join(d, 'node_modules'));
    const up = dirname(d);
    if (up === d) break;
    d = up;
  }
  return out.filter((p) => existsSync(p));
}

/** The registry, saying (to --verbose) which backend each request got and why the others were passed over. */
class CliRegistry extends BackendRegistry {
  constructor(private readonly debug: (message: string) => void) {
    super();
  }

  override async resolve(request: Parameters<BackendRegistry['resolve']>[0]): Promise<Backend> {
    const backend = await super.resolve(request);
    const d = await this.detect(backend.id);
    const skipped: string[] = [];
    if (!request.backend || request.backend === 'auto') {
      for (const id of this.ids()) {
        if (id === backend.id) break;
        const b = this.get(id);
        skipped.push(`${id}: ${!b.capabilities.inputFormats.includes(request.format) ? `does not read ${request.format}` : !b.capabilities.verbs.includes(request.verb) ? `does not ${request.verb}` : ((await this.detect(id)).reason ?? 'unavailable')}`);
      }
    }
    this.debug(`backend ${backend.id} ${backend.version} (${backend.packageName}${d.runtime ?? d.version ? `, runtime ${d.runtime ?? d.version}` : ''}) for ${request.verb} (${request.format} model; asked for ${request.backend ?? 'auto'})${skipped.length ? `; passed over ${skipped.join('; ')}` : ''}`);
    return backend;
  }
}

/**
 * Plugins are found in the current project's node_modules, in oclif's data folder (where
 * `qforge plugins install` puts them), among oclif's plugins (linked ones included) and in
 * QFORGE_PLUGIN_PATH (colon-separated node_modules folders).
 */
export function buildRegistry(options: { dataDir?: string; cwd?: string; pluginRoots?: string[]; debug?: (message: string) => void } = {}): BackendRegistry {
  const registry = options.debug ? new CliRegistry(options.debug) : new BackendRegistry();
  for (const f of BUNDLED_BACKENDS) registry.register(f);
  const dirs = [
    ...(process.env.QFORGE_PLUGIN_PATH ?? '').split(':').filter(Boolean),
    ...(options.dataDir ? [join(options.dataDir, 'node_modules')] : []),
    ...ancestorsNodeModules(options.cwd ?? process.cwd()),
  ];
  const { plugins, failures } = discoverPlugins(dirs, options.pluginRoots ?? []);
  registry.failures.push(...failures);
  // Bundled backends are already registered; their package copies in node_modules are skipped by id.
  registry.loadDiscovered(plugins);
  options.debug?.(`plugins searched in ${dirs.join(', ') || 'no folder'}; backends: ${registry.ids().join(', ')}${registry.failures.length ? `; failed to load: ${registry.failures.map((f) => `${f.package} (${f.reason})`).join('; ')}` : ''}`);
  return registry;
}
