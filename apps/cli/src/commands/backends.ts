import type { BackendCapabilities, Detection, PluginLoadFailure } from '@qforge/core';
import { QforgeCommand } from '../lib/base';
import { table } from '../lib/format';

export interface BackendRow {
  id: string;
  name: string;
  package: string;
  version: string;
  available: boolean;
  runtime?: string;
  reason?: string;
  hint?: string;
  formats: { input: string[]; output: string[] };
  targets: string[];
  verbs: string[];
  capabilities: BackendCapabilities;
  details?: Detection['details'];
}

export default class Backends extends QforgeCommand {
  static summary = 'List installed backends and whether each can run here.';
  static description = 'Bundled backends and plugins discovered in node_modules or installed with `qforge plugins install`. Plugins that fail to load are listed, not fatal.';
  static examples = ['<%= config.bin %> backends', '<%= config.bin %> backends --json'];

  async run(): Promise<{ backends: BackendRow[]; pluginFailures: PluginLoadFailure[] }> {
    await this.parse(Backends);
    const rows: BackendRow[] = [];
    for (const b of this.registry.all()) {
      const d = await this.registry.detect(b.id);
      rows.push({
        id: b.id,
        name: b.displayName,
        package: b.packageName,
        version: b.version,
        available: d.available,
        runtime: d.runtime,
        reason: d.reason,
        hint: d.hint,
        formats: { input: b.capabilities.inputFormats, output: b.capabilities.outputFormats },
        targets: b.capabilities.targets,
        verbs: b.capabilities.verbs,
        capabilities: b.capabilities,
        details: d.details,
      });
    }
    const failures = this.registry.failures;
    this.log(
      table([
        ['ID', 'AVAILABLE', 'VERSION', 'RUNTIME', 'FORMATS', 'VERBS'],
        ...rows.map((r) => [r.id, r.available ? 'yes' : 'no', r.version, r.runtime ?? '-', `${r.formats.input.join(',') || '-'} → ${r.formats.output.join(',') || '-'}`, r.verbs.join(',') || '-']),
      ]),
    );
    for (const r of rows) if (r.reason) this.log(`\n${r.id}: ${r.reason}${r.hint ? `\n  fix: ${r.hint}` : ''}`);
    for (const f of failures) this.log(`\nplugin ${f.package} failed to load: ${f.reason}`);
    return { backends: rows, pluginFailures: failures };
  }
}
