// Corrections (bias correction, equalization) are kept only when they measurably help; otherwise the model is written without them.
import { rmSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Backend, ModelRef, QuantizeOptions, QuantizeResult, VerifyOptions, VerifyResult } from './contract';
import type { CalibrationTable } from './calibration-table';
import type { RunContext } from './context';
import type { Dataset } from './datasets/dataset';
import { sha256File } from './files';
import { score } from './tuning';

/** Smallest change in a correction's score (dB, or accuracy points) that counts as an effect. */
export const CORRECTION_NOISE = 0.05;

/** What a quantization is made from; a correction is switched off by rewriting it. */
export interface QuantizationRecipe {
  table?: CalibrationTable;
  options: QuantizeOptions;
}

export interface Correction {
  /** `bias-correction`, `equalization`. */
  name: string;
  /** The same recipe with this correction off (equalization needs its own calibration). */
  off(recipe: QuantizationRecipe): Promise<QuantizationRecipe>;
  /** Asked for explicitly (`--qat`): its effect is measured and recorded, but it is never dropped. */
  always?: boolean;
}

/** One measured effect of a correction, as recorded in the report (one entry per metric). */
export interface CorrectionRecord {
  name: string;
  /** Plain name of the metric, with its unit. */
  metric: string;
  /** Which way is better for this metric. Absent in reports written before it was recorded (higher). */
  better?: 'higher' | 'lower';
  without: number;
  with: number;
  /** `with` is better than `without` by more than the noise. */
  helped: boolean;
  /** This metric decided whether the correction was kept. */
  decisive?: boolean;
  /** The written model has this correction. */
  applied?: boolean;
}

interface Measure {
  label: string;
  short: string;
  unit: string;
  better: 'higher' | 'lower';
  value(v: VerifyResult): number;
}

const SNR: Measure = { label: 'SNR dB (before the output activation where measured)', short: 'SNR', unit: 'dB', better: 'higher', value: (v) => score(v, 'snr') };
const ACCURACY_DROP: Measure = { label: 'top-1 accuracy drop (points)', short: 'top-1 accuracy drop', unit: 'points', better: 'lower', value: (v) => v.accuracy!.dropPoints };

/** Positive when `withIt` is better than `without`, in the metric's own unit. */
function gain(m: Measure, withIt: number, without: number): number {
  return m.better === 'higher' ? withIt - without : without - withIt;
}

export interface CorrectionDecision {
  records: CorrectionRecord[];
  /** Corrections left out of the written model. */
  dropped: string[];
  /** Plain sentences for the report's verdict reasons. */
  notes: string[];
  /** The recipe, model and verification of what is written (the inputs when nothing was dropped). */
  recipe: QuantizationRecipe;
  quantized: QuantizeResult;
  verify: VerifyResult;
}

/**
 * Measures each correction against the same quantization without it, on the evaluation data,
 * and keeps it only when it helps the deciding metric: top-1 accuracy drop when the data is
 * labeled, SNR when it is not or when accuracy does not move. The deciding metric must improve by
 * more than `CORRECTION_NOISE`; a correction that does not is left out and the model rewritten.
 */
export async function decideCorrections(
  backend: Backend,
  model: ModelRef,
  run: { recipe: QuantizationRecipe; quantized: QuantizeResult; verify: VerifyResult },
  corrections: Correction[],
  evaluation: { dataset: Dataset; options: VerifyOptions; workDir: string },
  ctx: RunContext,
): Promise<CorrectionDecision> {
  const records: CorrectionRecord[] = [];
  const dropped: string[] = [];
  const notes: string[] = [];
  const ext = extname(run.recipe.options.output);
  const variants = new Map<string, { quantized: QuantizeResult; verify: VerifyResult }>();
  for (const c of corrections) {
    const off = await c.off(run.recipe);
    const quantized = await backend.quantize(model, off.table, { ...off.options, output: join(evaluation.workDir, `without-${c.name}${ext}`) }, ctx);
    const verify = await backend.verify(model, quantized.model, evaluation.dataset, evaluation.options, ctx);
    variants.set(c.name, { quantized, verify });
    const measures = run.verify.accuracy && verify.accuracy ? [ACCURACY_DROP, SNR] : [SNR];
    const rows = measures.map((m): CorrectionRecord => {
      const withIt = m.value(run.verify);
      const without = m.value(verify);
      return { name: c.name, metric: m.label, better: m.better, without, with: withIt, helped: gain(m, withIt, without) > CORRECTION_NOISE, decisive: false, applied: true };
    });
    // The first metric that moves beyond the noise decides; accuracy first, as users judge by it.
    const moved = rows.findIndex((r, i) => Math.abs(gain(measures[i], r.with, r.without)) > CORRECTION_NOISE);
    const at = moved === -1 ? rows.length - 1 : moved;
    const decisive = rows[at];
    const m = measures[at];
    decisive.decisive = true;
    const keep = decisive.helped || Boolean(c.always);
    for (const r of rows) r.applied = keep;
    records.push(...rows);
    const name = c.name.replace('-', ' ');
    const figures = `${m.short} ${decisive.without.toFixed(2)} ${m.unit} without it, ${decisive.with.toFixed(2)} ${m.unit} with it`;
    if (keep && !decisive.helped) notes.push(`${name} kept as asked although ${Math.abs(decisive.with - decisive.without) <= CORRECTION_NOISE ? 'it made no measurable difference' : 'the result is worse with it'} (${figures})`);
    if (keep) continue;
    dropped.push(c.name);
    const effect = Math.abs(decisive.with - decisive.without) <= CORRECTION_NOISE ? 'it made no measurable difference' : 'it made the result worse';
    notes.push(`${name} left out: ${effect} (${figures}); the model is written without it`);
  }
  const keepAll = { recipe: run.recipe, quantized: run.quantized, verify: run.verify };
  let final = keepAll;
  if (dropped.length) {
    let recipe = run.recipe;
    for (const c of corrections.filter((x) => dropped.includes(x.name))) recipe = await c.off(recipe);
    const quantized = await backend.quantize(model, recipe.table, recipe.options, ctx);
    // One correction dropped: the same recipe was already verified, unless the rewrite differs.
    const measured = dropped.length === 1 ? variants.get(dropped[0])! : undefined;
    const same = measured && (await sha256File(measured.quantized.model.path)) === (await sha256File(quantized.model.path));
    const verify = same ? measured.verify : await backend.verify(model, quantized.model, evaluation.dataset, evaluation.options, ctx);
    final = { recipe, quantized, verify };
  }
  for (const v of variants.values()) rmSync(v.quantized.model.path, { force: true });
  return { records, dropped, notes, ...final };
}
