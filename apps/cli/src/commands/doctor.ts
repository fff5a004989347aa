import { arch, cpus, platform, totalmem } from 'node:os';
import { detectTargetProfile, readCpuInfo, type PluginLoadFailure, type TargetProfile } from '@qforge/core';
import { QforgeCommand } from '../lib/base';

export interface DoctorReport {
  node: string;
  platform: string;
  cpu: { model?: string; cores: number; avx2: boolean; avx512: boolean; vnni: boolean };
  memoryBytes: number;
  target: TargetProfile;
  backends: { id: string; available: boolean; version?: string; runtime?: string; reason?: string; hint?: string; details?: Record<string, unknown> }[];
  pluginFailures: PluginLoadFailure[];
}

export default class Doctor extends QforgeCommand {
  static summary = 'Check this machine: CPU features, the target profile `auto` picks, and every backend.';
  static examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json'];

  async run(): Promise<DoctorReport> {
    await this.parse(Doctor);
    const cpu = readCpuInfo();
    const target = detectTargetProfile(cpu);
    const backends = [];
    for (const b of this.registry.all()) {
      const d = await this.registry.detect(b.id);
      backends.push({ id: b.id, available: d.available, version: d.version, runtime: d.runtime, reason: d.reason, hint: d.hint, details: d.details });
    }
    const report: DoctorReport = {
      node: process.version,
      platform: `${platform()}-${arch()}`,
      cpu: { model: cpu.model, cores: cpus().length, avx2: cpu.avx2, avx512: cpu.avx512, vnni: cpu.vnni },
      memoryBytes: totalmem(),
      target,
      backends,
      pluginFailures: this.registry.failures,
    };
    this.log(`node      ${report.node} on ${report.platform}`);
    this.log(`cpu       ${cpu.model ?? 'unknown'} (${report.cpu.cores} cores): AVX2 ${cpu.avx2 ? 'yes' : 'no'}, AVX-512 ${cpu.avx512 ? 'yes' : 'no'}, VNNI ${cpu.vnni ? 'yes' : 'no'}`);
    this.log(`target    auto → ${target.id}: ${target.description}`);
    for (const n of target.notes) this.log(`          - ${n}`);
    this.log(`defaults  weights ${target.defaults.weightType}${target.defaults.reduceRange ? ' (7-bit, reduce-range)' : ''} ${target.defaults.perChannel ? 'per-channel' : 'per-tensor'}, activations ${target.defaults.activationType}, format ${target.defaults.format}`);
    this.log('backends');
    for (const b of backends) {
      this.log(`  ${b.available ? 'ok ' : 'no '} ${b.id.padEnd(12)} ${b.runtime ?? ''}${b.reason ? `  (${b.reason})` : ''}`);
      if (!b.available && b.hint) this.log(`      fix: ${b.hint}`);
      if (b.available) for (const [k, v] of Object.entries(b.details ?? {})) if (typeof v === 'string') this.log(`      ${k}: ${v}`);
    }
    for (const f of this.registry.failures) this.log(`  plugin ${f.package} failed to load: ${f.reason}`);
    return report;
  }
}
