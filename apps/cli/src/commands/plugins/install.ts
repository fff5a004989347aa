// `qforge plugins install`: local tarballs and folders installed with the CLI's own @qforge packages as their peers; registry names go to oclif.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Args, Flags } from '@oclif/core';
import { BackendRegistry, discoverPlugins, errBackendLoadFailed, errInvalidOption, copyFileAtomic, writeFileAtomic } from '@qforge/core';
import { QforgeCommand } from '../../lib/base';

interface PluginManifest {
  name?: unknown;
  version?: unknown;
  qforge?: { backend?: unknown };
  oclif?: unknown;
  peerDependencies?: Record<string, string>;
}

interface DataDirManifest {
  name?: string;
  private?: boolean;
  oclif: { schema?: number; plugins: ({ name: string; type: string; url?: string; tag?: string } | string)[] };
  dependencies?: Record<string, string>;
}

export interface InstalledPlugin {
  name: string;
  version: string;
  from: string;
  /** Peers served by the CLI's own copies (linked, never downloaded). */
  linkedPeers: string[];
}

/** A local path: ./x.tgz, ../dir, /abs, ~/x, file:…, or anything that exists on disk. */
export function isLocalPluginSpec(spec: string): boolean {
  return /^(\.{1,2}([/\\]|$)|[/\\]|~[/\\]|file:)/.test(spec) || /\.(tgz|tar\.gz)$/i.test(spec) || existsSync(spec);
}

/** package.json from a tarball that `npm pack` made (one top folder, usually `package/`). */
export function manifestFromTarball(file: string): PluginManifest {
  let tar: Buffer;
  try {
    tar = gunzipSync(readFileSync(file));
  } catch (e) {
    throw errInvalidOption('plugin', `${file} is not a gzip tarball (${(e as Error).message})`, 'Pass a tarball made by `npm pack`, or the plugin\'s folder.');
  }
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from: number, len: number) => header.subarray(from, from + len).toString('utf8').replace(/\0.*$/s, '');
    const name = (field(345, 155) ? `${field(345, 155)}/` : '') + field(0, 100);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) break;
    if (/^[^/]+\/package\.json$/.test(name)) {
      try {
        return JSON.parse(tar.subarray(at + 512, at + 512 + size).toString('utf8')) as PluginManifest;
      } catch (e) {
        throw errInvalidOption('plugin', `package.json in ${file} is not JSON (${(e as Error).message})`);
      }
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw errInvalidOption('plugin', `${file} holds no package.json`, 'Pass a tarball made by `npm pack`, or the plugin\'s folder.');
}

/** The folder of a package the CLI itself loads, found from the CLI and from its bundled backends. */
function cliCopyOf(pkg: string): string | undefined {
  const from = [__dirname, ...['@qforge/backend-onnxruntime', '@qforge/backend-tfjs'].flatMap((p) => {
    try {
      return [dirname(require.resolve(`${p}/package.json`))];
    } catch {
      return [];
    }
  })];
  try {
    return dirname(require.resolve(`${pkg}/package.json`, { paths: from }));
  } catch {
    return undefined;
  }
}

/** oclif's pinned npm (a dependency of @oclif/plugin-plugins), else the npm on PATH. */
function npmCommand(): [string, string[]] {
  try {
    const pj = require.resolve('npm/package.json', { paths: [__dirname] });
    const bin = (JSON.parse(readFileSync(pj, 'utf8')) as { bin: Record<string, string> }).bin.npm;
    return [process.execPath, [join(dirname(pj), bin)]];
  } catch {
    return ['npm', []];
  }
}

/** `npm pack` of a plugin folder into `out` (its prepack/prepare scripts run, as for a publish). */
function packFolder(cmd: string, pre: string[], folder: string, out: string): string {
  const file = execFileSync(cmd, [...pre, 'pack', '--silent', '--pack-destination', out], { cwd: folder, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop() ?? '';
  return join(out, file);
}

export default class PluginsInstall extends QforgeCommand {
  static summary = 'Install a backend plugin: a local tarball or folder, or a package from the npm registry.';
  static description = `A local tarball (./qforge-backend-acme-1.0.0.tgz) or folder is installed into qforge's data folder with its @qforge peer dependencies served by this CLI's own copies (linked, never downloaded), then loaded once to prove it works. Other names (qforge-backend-acme, @scope/pkg, a GitHub slug) go to oclif's plugin manager.`;
  static examples = ['<%= config.bin %> plugins install ./qforge-backend-acme-1.0.0.tgz', '<%= config.bin %> plugins install ../qforge-backend-acme', '<%= config.bin %> plugins install qforge-backend-acme'];
  static strict = false;
  static args = { plugin: Args.string({ description: 'tarball, folder, or npm package name', required: true }) };
  static flags = {
    force: Flags.boolean({ char: 'f', description: 'Pass --force to npm install.', default: false }),
  };

  async run(): Promise<{ installed: InstalledPlugin[] }> {
    const { argv, flags } = await this.parse(PluginsInstall);
    const installed: InstalledPlugin[] = [];
    for (const spec of argv as string[]) {
      if (isLocalPluginSpec(spec)) installed.push(await this.installLocal(spec, flags.force));
      else {
        const { commands } = (await import('@oclif/plugin-plugins')) as unknown as { commands: Record<string, { run(argv: string[], config: unknown): Promise<unknown> }> };
        await commands['plugins:install'].run([spec, ...(flags.force ? ['--force'] : [])], this.config);
      }
    }
    return { installed };
  }

  private async installLocal(spec: string, force: boolean): Promise<InstalledPlugin> {
    const raw = spec.startsWith('file:') ? spec.slice(5) : spec;
    const abs = resolve(raw.startsWith('~/') ? join(process.env.HOME ?? '', raw.slice(2)) : raw);
    if (!existsSync(abs)) throw errInvalidOption('plugin', `${abs} does not exist`, 'Pass the tarball `npm pack` wrote or the plugin\'s folder.');
    const folder = statSync(abs).isDirectory();
    if (folder && !existsSync(join(abs, 'package.json'))) throw errInvalidOption('plugin', `${abs} has no package.json`);
    const manifest: PluginManifest = folder ? (JSON.parse(readFileSync(join(abs, 'package.json'), 'utf8')) as PluginManifest) : manifestFromTarball(abs);
    if (typeof manifest.name !== 'string') throw errInvalidOption('plugin', `${abs}: package.json has no name`);
    const name = manifest.name;
    if (typeof manifest.qforge?.backend !== 'string') {
      throw errInvalidOption('plugin', `${name} is not a qforge backend: its package.json has no "qforge": { "backend": "<entry>" }`, 'See docs/plugin-authoring.md.');
    }

    const dataDir = this.config.dataDir;
    mkdirSync(dataDir, { recursive: true });
    const pjPath = join(dataDir, 'package.json');
    const pj: DataDirManifest = existsSync(pjPath) ? (JSON.parse(readFileSync(pjPath, 'utf8')) as DataDirManifest) : { name: this.config.name, private: true, oclif: { schema: 1, plugins: [] }, dependencies: {} };
    pj.oclif ??= { schema: 1, plugins: [] };
    pj.oclif.plugins ??= [];
    pj.dependencies ??= {};
    // Peers this CLI already loads are linked to its own copies: @qforge/core is not downloaded
    // again (it may not be on the registry at all), and the plugin shares the CLI's registry.
    const linkedPeers: string[] = [];
    for (const peer of Object.keys(manifest.peerDependencies ?? {})) {
      const copy = cliCopyOf(peer);
      if (!copy) continue;
      pj.dependencies[peer] = `file:${copy}`;
      linkedPeers.push(peer);
    }
    await writeFileAtomic(pjPath, JSON.stringify(pj, null, 2) + '\n');

    this.logToStderr(`installing ${name} from ${abs} into ${dataDir}${linkedPeers.length ? ` (peers from this CLI: ${linkedPeers.join(', ')})` : ''}`);
    const [cmd, pre] = npmCommand();
    try {
      // A folder is packed first and installed as a copy: linked, it would resolve its peers from
      // where it lives, not from qforge's data folder (and --install-links would copy the peers too).
      // The tarball is kept in the data folder, so later installs there still find it.
      const kept = join(dataDir, 'local-plugins');
      mkdirSync(kept, { recursive: true });
      const source = folder ? packFolder(cmd, pre, abs, kept) : join(kept, basename(abs));
      if (!folder) copyFileAtomic(abs, source);
      execFileSync(cmd, [...pre, 'install', source, '--omit', 'dev', '--no-audit', '--no-fund', '--loglevel=error', ...(force ? ['--force'] : [])], {
        cwd: dataDir,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        // onnxruntime-node (a common dependency of backends) would download binaries from outside the registry.
        env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: process.env.ONNXRUNTIME_NODE_INSTALL ?? 'skip' },
      });
    } catch (e) {
      const stderr = String((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n').slice(-6).join(' | ');
      throw errBackendLoadFailed(name, `npm install failed: ${stderr}`);
    }

    // Loaded once now, so a broken plugin is reported here rather than at its first use.
    const { plugins, failures } = discoverPlugins([], [join(dataDir, 'node_modules', name)]);
    const registry = new BackendRegistry();
    registry.loadDiscovered(plugins);
    const failure = [...failures, ...registry.failures][0];
    if (failure || !plugins.length) throw errBackendLoadFailed(name, failure?.reason ?? 'it was installed but declares no backend qforge can find');

    const entry = { name, type: 'user', url: folder ? abs : `file:${abs}` };
    pj.oclif.plugins = [...pj.oclif.plugins.filter((p) => (typeof p === 'string' ? p : p.name) !== name), entry];
    const after = JSON.parse(readFileSync(pjPath, 'utf8')) as DataDirManifest;
    await writeFileAtomic(pjPath, JSON.stringify({ ...after, oclif: { ...after.oclif, plugins: pj.oclif.plugins } }, null, 2) + '\n');
    const version = String(manifest.version ?? '0.0.0');
    this.log(`installed ${name}@${version} (backend ${registry.all().map((b) => b.id).join(', ')})`);
    return { name, version, from: abs, linkedPeers };
  }
}
