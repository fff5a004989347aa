// Target profiles: what the hardware can run fast decides the quantization defaults.
import { readFileSync } from 'node:fs';
import { arch } from 'node:os';
import type { CalibrationMethod, QuantFormat, QuantizeOptions, QuantType } from './contract';
import { errInvalidOption } from './errors';

export type TargetId = 'x86-avx2' | 'x86-vnni' | 'x86-generic' | 'arm64' | 'tflite-int8' | 'akida' | 'tvm-llvm';

export interface TargetDefaults {
  /** Activation type; uint8 activations pair with ONNX Runtime's u8s8 x86 kernels. */
  activationType: QuantType;
  weightType: QuantType;
  perChannel: boolean;
  /** 7-bit weights: required where int8 kernels accumulate pairs in int16 (AVX2 without VNNI). */
  reduceRange: boolean;
  symmetricWeights: boolean;
  format: QuantFormat;
  method: CalibrationMethod;
  /** Analytic bias correction by default (the report measures it against the run without). */
  biasCorrection?: boolean;
}

export interface TargetProfile {
  id: TargetId;
  description: string;
  defaults: TargetDefaults;
  /** Why the defaults are what they are. */
  notes: string[];
}

const x86Base: TargetDefaults = {
  activationType: 'uint8',
  weightType: 'int8',
  perChannel: true,
  reduceRange: false,
  symmetricWeights: true,
  format: 'qdq',
  method: 'minmax',
};

export const TARGET_PROFILES: Readonly<Record<TargetId, TargetProfile>> = {
  'x86-avx2': {
    id: 'x86-avx2',
    description: 'x86-64 with AVX2 and no VNNI (e.g. AMD Zen 3, Intel Haswell to Coffee Lake)',
    defaults: { ...x86Base, reduceRange: true },
    notes: [
      'u8xs8 kernels without VNNI add pairs of products in int16 and saturate on full-range weights; 7-bit weights avoid it',
      'activations stay uint8: int8 activations and ConvInteger run slower than fp32 here',
    ],
  },
  'x86-vnni': {
    id: 'x86-vnni',
    description: 'x86-64 with AVX512-VNNI or AVX-VNNI (Intel Cascade Lake+, AMD Zen 4+)',
    defaults: { ...x86Base },
    notes: ['VNNI accumulates u8xs8 products in int32 directly: full 8-bit weights are safe'],
  },
  'x86-generic': {
    id: 'x86-generic',
    description: 'x86-64 without AVX2 (SSE4 only)',
    defaults: { ...x86Base, reduceRange: true },
    notes: ['SSE int8 paths also accumulate in int16; weights use 7 bits'],
  },
  arm64: {
    id: 'arm64',
    description: 'ARM64 (NEON, optionally dot-product instructions)',
    defaults: { ...x86Base, activationType: 'uint8' },
    notes: ['ONNX Runtime ARM kernels accumulate in int32; full-range weights are safe'],
  },
  'tflite-int8': {
    id: 'tflite-int8',
    description: 'TFLite full-integer int8 (mobile, microcontrollers, int8 accelerators)',
    defaults: { activationType: 'int8', weightType: 'int8', perChannel: true, reduceRange: false, symmetricWeights: true, format: 'qoperator', method: 'minmax', biasCorrection: true },
    notes: [
      'per the TFLite quantization spec: int8 symmetric per-channel weights, int8 asymmetric activations',
      'bias correction on by default: rounding int8 weights shifts each channel\'s mean output, which deep depthwise-separable networks accumulate (docs/benchmarks.md measures it)',
    ],
  },
  akida: {
    id: 'akida',
    description: 'BrainChip Akida neuromorphic processor (through the Akida SDK)',
    defaults: { activationType: 'uint8', weightType: 'int8', perChannel: true, reduceRange: false, symmetricWeights: true, format: 'qoperator', method: 'minmax' },
    notes: ['quantization is done by the vendor SDK (quantizeml / cnn2snn)'],
  },
  'tvm-llvm': {
    id: 'tvm-llvm',
    description: 'Apache TVM compiling for the host CPU (llvm target)',
    defaults: { ...x86Base },
    notes: ['TVM compiles the model ahead of time for this CPU'],
  },
};

export interface CpuInfo {
  arch: string;
  model?: string;
  flags: string[];
  avx2: boolean;
  avx512: boolean;
  vnni: boolean;
}

/** Reads the CPU flags (Linux /proc/cpuinfo; other systems report the architecture only). */
export function readCpuInfo(cpuinfoText?: string, machineArch: string = arch()): CpuInfo {
  let text = cpuinfoText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  const flagLine = /^(flags|Features)\s*:\s*(.*)$/m.exec(text);
  const flags = flagLine ? flagLine[2].trim().split(/\s+/) : [];
  const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim();
  const has = (f: string) => flags.includes(f);
  return {
    arch: machineArch,
    model,
    flags,
    avx2: has('avx2'),
    avx512: has('avx512f'),
    vnni: has('avx512_vnni') || has('avx_vnni') || has('amx_int8'),
  };
}

/** The profile `auto` resolves to on this CPU. */
export function detectTargetProfile(cpu: CpuInfo = readCpuInfo()): TargetProfile {
  if (cpu.arch === 'arm64') return TARGET_PROFILES.arm64;
  if (cpu.vnni) return TARGET_PROFILES['x86-vnni'];
  if (cpu.avx2) return TARGET_PROFILES['x86-avx2'];
  return TARGET_PROFILES['x86-generic'];
}

export function resolveTargetProfile(id: string | undefined, cpu?: CpuInfo, supported: readonly TargetId[] = []): TargetProfile {
  if (!id || id === 'auto') {
    // `auto` means this CPU when the backend runs here; a backend that only writes for other
    // hardware (TFLite int8, Akida) gets its own first target.
    const here = detectTargetProfile(cpu);
    return supported.length && !supported.includes(here.id) ? TARGET_PROFILES[supported[0]] : here;
  }
  const profile = (TARGET_PROFILES as Record<string, TargetProfile>)[id];
  if (!profile) {
    throw errInvalidOption('--target', `unknown target "${id}"`, `Known targets: auto, ${Object.keys(TARGET_PROFILES).join(', ')}.`);
  }
  if (supported.length && !supported.includes(profile.id)) {
    throw errInvalidOption('--target', `the backend does not build for target "${id}"`, `This backend's targets: ${supported.join(', ')}.`);
  }
  return profile;
}

/** Quantize options with the profile's defaults, overridden where given. */
export function quantizeOptionsFor(target: TargetProfile, overrides: Partial<QuantizeOptions> & { output: string }): QuantizeOptions {
  const d = target.defaults;
  return {
    target,
    mode: 'static',
    format: d.format,
    perChannel: d.perChannel,
    activationType: d.activationType,
    weightType: d.weightType,
    reduceRange: d.reduceRange,
    symmetricWeights: d.symmetricWeights,
    excludeNodes: [],
    opTypes: [],
    ...overrides,
  };
}
