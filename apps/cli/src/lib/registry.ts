// Builds the backend registry the CLI uses: the bundled backends, then any discovered plugin.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BackendRegistry, discoverPlugins, type BackendFactory } from '@qforge/core';
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

/**
 * Plugins are found in the current project's node_modules, in oclif's data folder (where
 * `qforge plugins install` puts them), among oclif's plugins (linked ones included) and in
 * QFORGE_PLUGIN_PATH (colon-separated node_modules folders).
 */
export function buildRegistry(options: { dataDir?: string; cwd?: string; pluginRoots?: string[] } = {}): BackendRegistry {
  const registry = new BackendRegistry();
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
  return registry;
}
