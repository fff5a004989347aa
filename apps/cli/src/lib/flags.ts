// Flags shared by commands that read datasets or pick backends and targets.
import { Flags } from '@oclif/core';
import { MAX_SAMPLES, errInvalidOption, parseTaskFlags, readCharset, type ImagePreprocessing, type Layout, type TaskOptions } from '@qforge/core';

export const backendFlag = Flags.string({ description: 'Backend id, or auto to pick from the model format.', default: 'auto' });
export const targetFlag = Flags.string({ description: 'Target profile: auto (reads this CPU), x86-avx2, x86-vnni, x86-generic, arm64, tflite-int8, akida, tvm-llvm.', default: 'auto' });

export const imageFlags = {
  'input-shape': Flags.string({ description: 'Fix symbolic input dims: D0,D1,… or NAME:D0,D1,… (repeatable).', multiple: true, helpGroup: 'DATA' }),
  'image-size': Flags.string({ description: 'Image size WxH for image folders (default: from the model input).', helpGroup: 'DATA' }),
  layout: Flags.string({ description: 'Image tensor layout (default: from the model input).', options: ['NCHW', 'NHWC'], helpGroup: 'DATA' }),
  mean: Flags.string({ description: 'Per-channel mean after scaling pixels to 0..1, e.g. 0.485,0.456,0.406.', helpGroup: 'DATA' }),
  std: Flags.string({ description: 'Per-channel std, e.g. 0.229,0.224,0.225.', helpGroup: 'DATA' }),
  resize: Flags.string({
    description: 'How images fit --image-size: cover (crop), contain (letterbox), fill (stretch), pad (keep aspect, pad right/bottom with zeros: text lines, documents).',
    options: ['cover', 'contain', 'fill', 'pad'],
    helpGroup: 'DATA',
  }),
};

function numbers(flag: string, v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const out = v.split(',').map(Number);
  if (out.some((x) => !Number.isFinite(x))) throw errInvalidOption(`--${flag}`, `"${v}" is not a comma-separated list of numbers`);
  return out;
}

export function imageOptions(flags: { 'image-size'?: string; layout?: string; mean?: string; std?: string; resize?: string }): Partial<ImagePreprocessing> {
  const out: Partial<ImagePreprocessing> = {};
  if (flags.resize) out.fit = flags.resize as ImagePreprocessing['fit'];
  if (flags['image-size']) {
    const m = /^(\d+)x(\d+)$/.exec(flags['image-size']);
    if (!m) throw errInvalidOption('--image-size', `"${flags['image-size']}" is not WxH`, 'Example: --image-size 224x224');
    out.width = Number(m[1]);
    out.height = Number(m[2]);
  }
  if (flags.layout) out.layout = flags.layout as Layout;
  const mean = numbers('mean', flags.mean);
  const std = numbers('std', flags.std);
  if (mean) out.mean = mean;
  if (std) {
    if (std.some((s) => s === 0)) throw errInvalidOption('--std', 'std values must not be 0');
    out.std = std;
  }
  return out;
}

/** A positive integer flag, capped: `--samples 99999999999` is a typo, not a request. */
export function positiveInt(name: string, v: number, max: number = MAX_SAMPLES): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw errInvalidOption(`--${name}`, `must be an integer from 1 to ${max}, got ${v}`);
  return v;
}

/**
 * A numeric flag given as text: finite and inside its range, so `--min-snr abc` is refused instead of
 * becoming NaN (every comparison with NaN is false, so a NaN threshold would pass every model).
 */
export function numberIn(name: string, v: string, range: { min: number; max: number; minExclusive?: boolean }): number {
  const x = v.trim() === '' ? NaN : Number(v);
  const low = range.minExclusive ? x > range.min : x >= range.min;
  if (!Number.isFinite(x) || !low || x > range.max) {
    throw errInvalidOption(`--${name}`, `"${v}" is not a number in ${range.minExclusive ? '(' : '['}${range.min}, ${range.max}]`);
  }
  return x;
}

/** Ranges of the numeric flags several commands share. */
export const RANGES = {
  snrDb: { min: -1000, max: 1000 },
  accDropPoints: { min: 0, max: 100 },
  cosine: { min: -1, max: 1 },
  percentile: { min: 0, max: 100, minExclusive: true },
  share: { min: 0, max: 1 },
  percentIncrease: { min: 0, max: 1e6 },
} as const;

export function list(v: string | undefined): string[] {
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : [];
}

/** How outputs are read for verification: shared by verify, quantize, sweep and sensitivity. */
export const taskFlags = {
  task: Flags.string({ description: 'What an output means, overriding detection: <output>=classes|map|sequence|embedding|language-model (repeatable).', multiple: true, helpGroup: 'TASK' }),
  'map-threshold': Flags.string({ description: 'Probability above which a map pixel is "on" (IoU of map outputs).', default: '0.5', helpGroup: 'TASK' }),
  ctc: Flags.boolean({ description: 'Greedy-decode sequence outputs as CTC and compare the decoded strings (implied by --charset).', helpGroup: 'TASK' }),
  'ctc-blank': Flags.integer({ description: 'Index of the CTC blank class.', default: 0, helpGroup: 'TASK' }),
  charset: Flags.string({ description: 'CTC symbols, one per line in class order after the blank (PaddleOCR ppocr_keys_v1.txt); with string labels (labels.txt beside the data) gives line and character accuracy.', helpGroup: 'TASK' }),
  'ignore-space': Flags.boolean({ description: "Compare decoded lines and labels with every space removed, as PaddleOCR's RecMetric(ignore_space) does: line and character accuracy stop counting where spaces fall. Needs --charset.", default: false, helpGroup: 'TASK' }),
};

export function taskOptions(flags: { task?: string[]; 'map-threshold'?: string; ctc?: boolean; 'ctc-blank'?: number; charset?: string; 'ignore-space'?: boolean }): TaskOptions {
  const out: TaskOptions = {};
  if (flags.task?.length) out.tasks = parseTaskFlags(flags.task);
  if (flags['map-threshold'] !== undefined) out.mapThreshold = numberIn('map-threshold', flags['map-threshold'], { min: -1e6, max: 1e6 });
  if (flags['ignore-space'] && !flags.charset) {
    throw errInvalidOption(
      '--ignore-space',
      flags.ctc ? 'without --charset the decoded lines are class indices, which hold no spaces to ignore' : 'it applies to CTC-decoded text lines, and neither --ctc nor --charset was given',
      'Pass --charset <file> (the recognizer\'s symbols, e.g. ppocr_keys_v1.txt), or leave out --ignore-space.',
    );
  }
  if (flags.ctc || flags.charset) {
    const blank = flags['ctc-blank'] ?? 0;
    if (!Number.isInteger(blank) || blank < 0) throw errInvalidOption('--ctc-blank', `must be a class index (integer ≥ 0), got ${blank}`);
    out.ctc = { blank, ...(flags.charset ? { charset: readCharset(flags.charset), charsetFile: flags.charset } : {}), ...(flags['ignore-space'] ? { ignoreSpace: true } : {}) };
  }
  return out;
}
