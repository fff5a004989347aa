// The machine a trial ran on: speed figures are only comparable within one of these.
import { availableParallelism, hostname } from 'node:os';
import { readCpuInfo } from '@qforge/core';

export interface MachineInfo {
  /** The worker's `--name` (default: host name and process id). */
  worker: string;
  host: string;
  cpu?: string;
  arch: string;
  avx2: boolean;
  avx512: boolean;
  vnni: boolean;
  /** Logical CPUs the worker's process may use. */
  threads: number;
}

export function describeMachine(worker?: string): MachineInfo {
  const cpu = readCpuInfo();
  const host = hostname();
  return { worker: worker ?? `${host}-${process.pid}`, host, cpu: cpu.model, arch: cpu.arch, avx2: cpu.avx2, avx512: cpu.avx512, vnni: cpu.vnni, threads: availableParallelism() };
}

/** What makes two speed measurements comparable: the same host and CPU. */
export function machineKey(m: MachineInfo): string {
  return `${m.host}|${m.cpu ?? m.arch}`;
}

/** `w1@box (AMD EPYC 7B13; avx2, no vnni; 2 threads)` */
export function formatMachine(m: MachineInfo): string {
  return `${m.worker}@${m.host} (${m.cpu ?? m.arch}; ${m.avx2 ? 'avx2' : 'no avx2'}, ${m.vnni ? 'vnni' : 'no vnni'}; ${m.threads} threads)`;
}
