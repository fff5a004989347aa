// `--preset transformers.js`: the quantized variants transformers.js loads, each a verified run, and one table over them.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { copyFileAtomic, describeTaskMetric, errInvalidOption, formatSpeedup, modelInputFiles, modelRef, writeFileAtomic, type ModelRef, type QuantMode, type QuantizeRunOptions, type RunReport, type Verdict } from '@qforge/core';
import { allGraphs, decodeModel, encodeModel } from '@qforge/onnx';

/**
 * One variant: transformers.js builds the file name as `model` + the suffix of the `dtype` it is
 * asked for (`DEFAULT_DTYPE_SUFFIX_MAPPING`: fp16 → `_fp16`, q8 → `_quantized`, int8 → `_int8`,
 * uint8 → `_uint8`, q4 → `_q4`, q4f16 → `_q4f16`, bnb4 → `_bnb4`) under the repository's `onnx/`.
 */
export interface PresetVariant {
  dtype: string;
  file: string;
  mode?: QuantMode;
  weightOnly?: QuantizeRunOptions['weightOnly'];
  /** The same model as another variant's file (transformers.js names it twice). */
  sameAs?: string;
  /** Why this variant is not written. */
  skipped?: string;
}

export const TRANSFORMERS_JS_VARIANTS: readonly PresetVariant[] = [
  { dtype: 'fp16', file: 'model_fp16.onnx', mode: 'fp16' },
  { dtype: 'q8', file: 'model_quantized.onnx', mode: 'dynamic' },
  // transformers.js's own converter writes q8 with int8 weights for most models, so int8 is the same file.
  { dtype: 'int8', file: 'model_int8.onnx', sameAs: 'q8' },
  { dtype: 'q4', file: 'model_q4.onnx', mode: 'weight-only' },
  { dtype: 'uint8', file: 'model_uint8.onnx', skipped: 'DynamicQuantizeMatMul takes int8 weights here; uint8 weights are not written' },
  { dtype: 'q4f16', file: 'model_q4f16.onnx', skipped: 'MatMulNBits with float16 activations is not written yet' },
  { dtype: 'bnb4', file: 'model_bnb4.onnx', skipped: 'MatMulBnb4 (NF4/FP4) is not written' },
];

/**
 * The side file transformers.js fetches for a model file that has external data: `<file>_data`
 * (its `getExternalDataChunkNames`; further chunks `<file>_data_1`, …), e.g. `model_q4.onnx_data`,
 * when config.json's `transformers.js_config.use_external_data_format` is set for the file.
 */
export const transformersJsDataName = (file: string, chunk = 0) => `${file}_data${chunk ? `_${chunk}` : ''}`;

/**
 * Copies a written model under another file name. A model with external data gets its side
 * file(s) copied under the new name's `_data` name(s), and the copy records those names: ONNX
 * Runtime finds a side file by the name in the model, and transformers.js fetches it by the
 * model's file name. Returns the side files written.
 */
export async function copyModelAs(from: string, to: string): Promise<string[]> {
  const proto = decodeModel(readFileSync(from), from);
  const renamed = new Map<string, string>();
  for (const g of allGraphs(proto.graph)) {
    for (const t of g.initializer) {
      if (t.dataLocation !== 1) continue;
      for (const e of t.externalData ?? []) {
        if (e.key !== 'location' || !e.value) continue;
        const target = renamed.get(e.value) ?? transformersJsDataName(basename(to), renamed.size);
        renamed.set(e.value, target);
        e.value = target;
      }
    }
  }
  if (!renamed.size) {
    copyFileAtomic(from, to);
    return [];
  }
  for (const [source, target] of renamed) copyFileAtomic(join(dirname(from), source), join(dirname(to), target));
  await writeFileAtomic(to, encodeModel(proto));
  return [...renamed.values()];
}

/** The fp32 model of a transformers.js repository folder (`onnx/model.onnx` or `model.onnx`), or the file given. */
export function presetInput(path: string): ModelRef {
  const abs = resolve(path);
  if (existsSync(abs) && statSync(abs).isDirectory()) {
    const found = [join(abs, 'onnx', 'model.onnx'), join(abs, 'model.onnx')].find((p) => existsSync(p));
    if (!found) throw errInvalidOption('model', `${path} is a folder without onnx/model.onnx or model.onnx`, 'Pass the fp32 model file, or the folder of a transformers.js model.');
    return modelRef(found);
  }
  const ref = modelRef(abs);
  if (ref.format !== 'onnx') throw errInvalidOption('--preset transformers.js', `${path} is not an ONNX model`, 'The transformers.js preset writes ONNX variants of an ONNX model.');
  return ref;
}

export interface PresetVariantResult {
  dtype: string;
  file: string;
  /** Absent for skipped variants. */
  path?: string;
  runDir?: string;
  sameAs?: string;
  skipped?: string;
  /** Side files holding the weights (`<file>_data`), when the model is too large for one file. */
  externalData?: string[];
  sizeBytes?: number;
  /** Variant size / fp32 size. */
  sizeRatio?: number;
  latencyMsP50?: number;
  fp32LatencyMsP50?: number;
  /** fp32 median latency / variant median latency (above 1: faster), with its interval. */
  speedup?: string;
  /** The metric that decided the verdict, per output. */
  fidelity?: string[];
  verdict?: Verdict;
}

export interface PresetOutput {
  preset: 'transformers.js';
  input: string;
  outputDir: string;
  variants: PresetVariantResult[];
  passed: boolean;
}

/** Base options → one run per variant; `run` performs it (the CLI's runAndRender). */
export async function runTransformersPreset(
  base: QuantizeRunOptions,
  outputDir: string,
  run: (options: QuantizeRunOptions, variant: PresetVariant) => Promise<{ runDir: string; report: RunReport }>,
): Promise<PresetOutput> {
  const dir = resolve(outputDir);
  mkdirSync(dir, { recursive: true });
  const results: PresetVariantResult[] = [];
  for (const v of TRANSFORMERS_JS_VARIANTS) {
    if (v.skipped) {
      results.push({ dtype: v.dtype, file: v.file, skipped: v.skipped });
      continue;
    }
    const path = join(dir, v.file);
    if (v.sameAs) {
      const twin = results.find((r) => r.dtype === v.sameAs);
      if (!twin?.path) {
        results.push({ dtype: v.dtype, file: v.file, skipped: `${v.sameAs} was not written` });
        continue;
      }
      const externalData = await copyModelAs(twin.path, path);
      results.push({ ...twin, dtype: v.dtype, file: v.file, path, sameAs: twin.file, ...(externalData.length ? { externalData } : {}) });
      continue;
    }
    const options: QuantizeRunOptions = {
      ...base,
      mode: v.mode,
      output: path,
      // q4 is 4-bit whatever --weight-bits says; block size, symmetry, algorithm and keeps follow the flags.
      weightOnly: v.mode === 'weight-only' ? { blockSize: 32, symmetric: false, algorithm: 'rtn', ...base.weightOnly, bits: 4 } : base.weightOnly,
      command: `${base.command ?? 'quantize'} [${v.dtype} → ${v.file}]`,
      // Weights too large for one file go where transformers.js looks for them.
      externalData: { ...base.externalData, fileName: transformersJsDataName(v.file) },
    };
    const { runDir, report } = await run(options, v);
    const b = report.benchmark;
    const externalData = modelInputFiles(modelRef(path)).slice(1).map((f) => basename(f));
    results.push({
      dtype: v.dtype,
      file: v.file,
      path,
      runDir,
      ...(externalData.length ? { externalData } : {}),
      sizeBytes: report.sizes?.outputBytes,
      sizeRatio: report.sizes?.ratio,
      latencyMsP50: b?.primary.latencyMs.p50,
      fp32LatencyMsP50: b?.compare?.latencyMs.p50,
      speedup: b?.compare ? formatSpeedup(b.speedupEstimate ?? b.speedup) : undefined,
      fidelity: report.verify?.outputs.map((o) => (o.task ? `${o.output}: ${describeTaskMetric(o.task)}` : `${o.output}: SNR ${o.snrDb.toFixed(1)} dB`)),
      verdict: report.verdict,
    });
  }
  return { preset: 'transformers.js', input: base.model.path, outputDir: dir, variants: results, passed: results.every((r) => r.verdict !== 'fail' && r.verdict !== 'error') };
}

const mib = (n?: number) => (n === undefined ? '—' : `${(n / 2 ** 20).toFixed(2)} MiB`);

/** The human table: one row per variant. */
export function formatPresetTable(out: PresetOutput): string {
  const rows = [['dtype', 'file', 'size (× fp32)', 'latency p50; speedup over fp32', 'verdict', 'fidelity']];
  for (const v of out.variants) {
    if (v.skipped) {
      rows.push([v.dtype, v.file, '—', '—', 'not written', v.skipped]);
      continue;
    }
    const size = `${mib(v.sizeBytes)}${v.sizeRatio !== undefined ? ` (${v.sizeRatio.toFixed(3)}×)` : ''}`;
    const latency = v.latencyMsP50 !== undefined ? `${v.latencyMsP50.toFixed(3)} ms${v.speedup ? `; ${v.speedup}` : ''}` : '—';
    const fidelity = v.sameAs ? `same file as ${v.sameAs}` : (v.fidelity ?? []).join('; ') || '—';
    rows.push([v.dtype, v.file, size, latency, (v.verdict ?? '—').toUpperCase(), fidelity]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (c === rows[0].length - 1 ? 0 : r[c].length))));
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  '));
  const external = out.variants.filter((v) => v.externalData?.length);
  if (external.length) {
    const files = Object.fromEntries(external.map((v) => [v.file, v.externalData!.length]));
    lines.push(`Weights in side files (${external.flatMap((v) => v.externalData!).join(', ')}): transformers.js loads them when config.json has "transformers.js_config": {"use_external_data_format": ${JSON.stringify(files)}}.`);
  }
  return [`transformers.js variants of ${out.input} in ${out.outputDir}:`, ...lines].join('\n');
}
