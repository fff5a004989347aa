// The backend registry: factories behind a tsyringe token, plus discovery of installed plugins.
import 'reflect-metadata';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { Backend, BackendFactory, Detection, ModelFormat, Verb } from './contract';
import { errBackendUnavailable, errBackendUnknown, errNoBackend, errUnsupported } from './errors';

/** The tsyringe token every backend factory is registered under. */
export const BACKEND_FACTORY = Symbol.for('qforge.BackendFactory');

/** What a plugin puts in its package.json to be discovered: `"qforge": { "backend": "./dist/index.js" }`. */
export interface PluginManifest {
  backend: string;
}

export interface PluginLoadFailure {
  package: string;
  path: string;
  reason: string;
}

export interface DiscoveredPlugin {
  package: string;
  version: string;
  path: string;
  entry: string;
}

export class BackendRegistry {
  private readonly container: DependencyContainer;
  private readonly instances = new Map<string, Backend>();
  private readonly detections = new Map<string, Promise<Detection>>();
  readonly failures: PluginLoadFailure[] = [];

  constructor(parent: DependencyContainer = rootContainer) {
    this.container = parent.createChildContainer();
  }

  register(factory: BackendFactory): void {
    if (this.ids().includes(factory.id)) return;
    this.container.register<BackendFactory>(BACKEND_FACTORY, { useValue: factory });
  }

  private factories(): BackendFactory[] {
    return this.container.isRegistered(BACKEND_FACTORY) ? this.container.resolveAll<BackendFactory>(BACKEND_FACTORY) : [];
  }

  ids(): string[] {
    return this.factories().map((f) => f.id);
  }

  get(id: string): Backend {
    const cached = this.instances.get(id);
    if (cached) return cached;
    const factory = this.factories().find((f) => f.id === id);
    if (!factory) throw errBackendUnknown(id, this.ids());
    const backend = factory.create();
    this.instances.set(id, backend);
    return backend;
  }

  all(): Backend[] {
    return this.ids().map((id) => this.get(id));
  }

  /** Cached detection; a detect() that throws counts as unavailable (it must not, but plugins vary). */
  detect(id: string): Promise<Detection> {
    let d = this.detections.get(id);
    if (!d) {
      d = this.get(id)
        .detect()
        .catch((e: unknown) => ({ available: false, reason: `detect() threw: ${(e as Error).message}` }));
      this.detections.set(id, d);
    }
    return d;
  }

  /**
   * Picks the backend for a request: the named one (which must be available), or with `auto`
   * the first available backend that reads the format and implements the verb.
   */
  async resolve(request: { backend?: string; format: ModelFormat; verb: Verb }): Promise<Backend> {
    if (request.backend && request.backend !== 'auto') {
      const b = this.get(request.backend);
      const d = await this.detect(b.id);
      if (!d.available) throw errBackendUnavailable(b.id, d.reason ?? 'unknown reason', d.hint);
      if (!b.capabilities.inputFormats.includes(request.format)) throw errUnsupported(b.id, `${request.format} models`, `it reads ${b.capabilities.inputFormats.join(', ') || 'no formats'}`);
      if (!b.capabilities.verbs.includes(request.verb)) throw errUnsupported(b.id, request.verb, 'the backend does not implement this verb');
      return b;
    }
    const reasons: { backend: string; reason: string }[] = [];
    for (const b of this.all()) {
      if (!b.capabilities.inputFormats.includes(request.format)) {
        reasons.push({ backend: b.id, reason: `does not read ${request.format} models` });
        continue;
      }
      if (!b.capabilities.verbs.includes(request.verb)) {
        reasons.push({ backend: b.id, reason: `does not implement ${request.verb}` });
        continue;
      }
      const d = await this.detect(b.id);
      if (!d.available) {
        reasons.push({ backend: b.id, reason: d.reason ?? 'unavailable' });
        continue;
      }
      return b;
    }
    throw errNoBackend(`${request.verb} a ${request.format} model`, reasons);
  }

  /** Loads every discovered plugin; a plugin that fails is recorded in `failures`, never thrown. */
  loadDiscovered(plugins: DiscoveredPlugin[]): void {
    for (const p of plugins) {
      if (this.failures.some((f) => f.path === p.path)) continue;
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const mod = require(p.entry) as { backendFactory?: BackendFactory; default?: BackendFactory };
        const factory = mod.backendFactory ?? mod.default;
        if (!factory || typeof factory.create !== 'function' || typeof factory.id !== 'string') {
          throw new Error('its entry does not export `backendFactory` ({ id, create })');
        }
        this.register(factory);
      } catch (e) {
        this.failures.push({ package: p.package, path: p.path, reason: (e as Error).message });
      }
    }
  }
}

/**
 * Finds installed packages that declare `qforge.backend` in package.json, under each given
 * node_modules folder (scoped packages included) and among `packageDirs` (package folders named
 * directly, e.g. plugins linked with `qforge plugins link`). Unreadable manifests are reported.
 */
export function discoverPlugins(nodeModulesDirs: string[], packageDirs: string[] = []): { plugins: DiscoveredPlugin[]; failures: PluginLoadFailure[] } {
  const plugins: DiscoveredPlugin[] = [];
  const failures: PluginLoadFailure[] = [];
  const seen = new Set<string>();
  const consider = (dir: string) => {
    const pj = join(dir, 'package.json');
    if (!existsSync(pj)) return;
    let real: string;
    try {
      real = realpathSync(dir);
    } catch {
      return;
    }
    if (seen.has(real)) return;
    seen.add(real);
    let manifest: { name?: string; version?: string; qforge?: Partial<PluginManifest> };
    try {
      manifest = JSON.parse(readFileSync(pj, 'utf8'));
    } catch (e) {
      return void failures.push({ package: dir, path: dir, reason: `package.json is not JSON: ${(e as Error).message}` });
    }
    if (!manifest.qforge || typeof manifest.qforge !== 'object') return;
    if (typeof manifest.qforge.backend !== 'string') {
      return void failures.push({ package: manifest.name ?? dir, path: real, reason: '"qforge.backend" must be the path of the entry module' });
    }
    plugins.push({ package: manifest.name ?? dir, version: manifest.version ?? '0.0.0', path: real, entry: resolve(real, manifest.qforge.backend) });
  };
  for (const dir of packageDirs) consider(dir);
  for (const nm of nodeModulesDirs) {
    if (!existsSync(nm)) continue;
    for (const name of readdirSync(nm)) {
      if (name.startsWith('.')) continue;
      if (name.startsWith('@')) {
        let scoped: string[] = [];
        try {
          scoped = readdirSync(join(nm, name));
        } catch {
          continue;
        }
        for (const s of scoped) consider(join(nm, name, s));
      } else consider(join(nm, name));
    }
  }
  return { plugins, failures };
}
