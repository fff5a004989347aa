// Pass/fail of a verification against its thresholds, judged the same way for every backend.
import type { VerifyResult, VerifyThresholds } from './contract';
import type { OutputFidelity } from './metrics';
import { DEFAULT_TASK_THRESHOLDS, signedPercent, spacesNote } from './tasks';

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * The task metric that judges one output: `[ok, "name: metric value ≥ limit"]`, or undefined for
 * outputs without a task (older backends), which only the SNR/cosine thresholds judge.
 */
function judgeTask(o: OutputFidelity, t: VerifyThresholds, result: VerifyResult, first: boolean): [boolean, string, VerdictTarget?] | undefined {
  const task = o.task;
  if (!task) return undefined;
  const D = DEFAULT_TASK_THRESHOLDS;
  const d = {
    minTop1Agreement: t.minTop1Agreement ?? D.minTop1Agreement,
    minIou: t.minIou ?? D.minIou,
    minPositionAgreement: t.minPositionAgreement ?? D.minPositionAgreement,
    minLineAgreement: t.minLineAgreement ?? D.minLineAgreement,
    maxLineAccuracyDropPoints: t.maxLineAccuracyDropPoints ?? D.maxLineAccuracyDropPoints,
    maxRelativeError: t.maxRelativeError ?? D.maxRelativeError,
    maxPerplexityIncreasePercent: t.maxPerplexityIncreasePercent ?? D.maxPerplexityIncreasePercent,
  };
  const name = `${o.output} (${task.kind})`;
  switch (task.kind) {
    case 'classes': {
      // Class labels judge the first output (where backends measure accuracy); agreement judges the rest.
      if (first && result.accuracy) {
        const a = result.accuracy;
        const max = t.maxAccuracyDropPoints ?? 1;
        return [a.dropPoints <= max, `${name}: top-1 accuracy ${pct(a.reference)} → ${pct(a.candidate)}, drop ${a.dropPoints.toFixed(2)} points ${a.dropPoints <= max ? '≤' : '>'} ${max}`, ['top1-drop', '<=', max]];
      }
      if (task.top1Agreement === undefined) return undefined;
      const ok = task.top1Agreement >= d.minTop1Agreement;
      return [ok, `${name}: top-1 agreement ${pct(task.top1Agreement)} ${ok ? '≥' : '<'} ${pct(d.minTop1Agreement)}`, ['top1-agree', '>=', d.minTop1Agreement]];
    }
    case 'map': {
      const ok = task.iou! >= d.minIou;
      return [ok, `${name}: map IoU ${task.iou!.toFixed(3)} ${ok ? '≥' : '<'} ${d.minIou} at threshold ${task.threshold}`, ['iou', '>=', d.minIou]];
    }
    case 'sequence': {
      if (task.lineAccuracy) {
        const a = task.lineAccuracy;
        // A reference that reads nothing means the labels or the charset are wrong: no verdict can rest on it.
        if (a.reference === 0) return [false, `${name}: the fp32 model reads none of the labeled lines (check --charset, --ctc blank index and the labels)`];
        const ok = a.dropPoints <= d.maxLineAccuracyDropPoints;
        return [ok, `${name}: line accuracy${spacesNote(task)} ${pct(a.reference)} → ${pct(a.candidate)}, drop ${a.dropPoints.toFixed(2)} points ${ok ? '≤' : '>'} ${d.maxLineAccuracyDropPoints}`, ['line-acc-drop', '<=', d.maxLineAccuracyDropPoints]];
      }
      if (task.lineAgreement !== undefined) {
        const ok = task.lineAgreement >= d.minLineAgreement;
        return [ok, `${name}: decoded lines equal${spacesNote(task)} ${pct(task.lineAgreement)} ${ok ? '≥' : '<'} ${pct(d.minLineAgreement)}`, ['line-agree', '>=', d.minLineAgreement]];
      }
      if (task.positionAgreement === undefined) return undefined;
      const ok = task.positionAgreement >= d.minPositionAgreement;
      return [ok, `${name}: position agreement ${pct(task.positionAgreement)} ${ok ? '≥' : '<'} ${pct(d.minPositionAgreement)}`, ['position-agree', '>=', d.minPositionAgreement]];
    }
    case 'embedding': {
      const ok = task.relativeError! <= d.maxRelativeError;
      return [ok, `${name}: relative error ${task.relativeError!.toPrecision(3)} ${ok ? '≤' : '>'} ${d.maxRelativeError}`, ['rel-error', '<=', d.maxRelativeError]];
    }
    case 'language-model': {
      // No next token to score (all masked, or one-token samples): perplexity cannot vouch for the model.
      if (!task.perplexity) return [false, `${name}: no unmasked position has a next token; perplexity needs samples of two or more tokens`];
      const p = task.perplexity;
      const ok = p.increasePercent <= d.maxPerplexityIncreasePercent;
      return [ok, `${name}: perplexity ${p.reference.toFixed(3)} → ${p.candidate.toFixed(3)}, ${signedPercent(p.increasePercent)} ${ok ? '≤' : '>'} +${d.maxPerplexityIncreasePercent}% (next-token agreement ${pct(task.nextTokenAgreement ?? 0)})`, ['ppl-increase', '<=', d.maxPerplexityIncreasePercent]];
    }
  }
}

/** The limit a verdict applied to one output, as an accuracy-search target: `['iou', '>=', 0.93]`. */
export type VerdictTarget = [metric: 'snr' | 'top1-drop' | 'top1-agree' | 'iou' | 'line-acc-drop' | 'line-agree' | 'position-agree' | 'rel-error' | 'ppl-increase', op: '>=' | '<=', value: number];

/**
 * The limits a failed verification missed, one per failing output, first output first: what a
 * search has to reach for the verdict to pass. Limits a search cannot move (a reference that reads
 * nothing, no next token to score) give none.
 */
export function failedTargets(result: VerifyResult): VerdictTarget[] {
  const t = result.thresholds;
  const out: VerdictTarget[] = [];
  result.outputs.forEach((o, k) => {
    const verdict = judgeTask(o, t, result, k === 0);
    if (verdict && !verdict[0] && verdict[2]) out.push(verdict[2]);
    const minSnrDb = snrLimit(t, Boolean(verdict));
    if (minSnrDb !== undefined && o.snrDb < minSnrDb) out.push(['snr', '>=', minSnrDb]);
  });
  if (result.accuracy && t.maxAccuracyDropPoints !== undefined && result.accuracy.dropPoints > t.maxAccuracyDropPoints && !out.some((x) => x[0] === 'top1-drop')) out.push(['top1-drop', '<=', t.maxAccuracyDropPoints]);
  return out;
}

/** The SNR an output without a task verdict must reach when no limit was given. */
const FALLBACK_MIN_SNR_DB = 20;

/**
 * The SNR limit of one output: the one given, else (outputs no task metric judged, no cosine limit)
 * the fallback, so no output passes unjudged.
 */
const snrLimit = (t: VerifyThresholds, taskJudged: boolean): number | undefined => t.minSnrDb ?? (!taskJudged && t.minCosine === undefined ? FALLBACK_MIN_SNR_DB : undefined);

export function judgeVerification(result: VerifyResult): VerifyResult {
  const t = result.thresholds;
  const failures: string[] = [];
  const decidedBy: string[] = [];
  let accuracyJudged = false;
  result.outputs.forEach((o, k) => {
    const verdict = judgeTask(o, t, result, k === 0);
    if (verdict) {
      (verdict[0] ? decidedBy : failures).push(verdict[1]);
      if (k === 0 && o.task?.kind === 'classes' && result.accuracy) accuracyJudged = true;
    }
    // An output no task metric judged (a backend that reports fidelity only) is never passed
    // unjudged: it falls back to the SNR limit that applied before task-aware verdicts.
    const minSnrDb = snrLimit(t, Boolean(verdict));
    if (minSnrDb !== undefined && o.snrDb < minSnrDb) failures.push(`${o.output}: SNR ${o.snrDb.toFixed(1)} dB < ${minSnrDb} dB`);
    if (t.minCosine !== undefined && o.cosine < t.minCosine) failures.push(`${o.output}: cosine ${o.cosine.toFixed(4)} < ${t.minCosine}`);
    if (!verdict && (minSnrDb !== undefined || t.minCosine !== undefined)) decidedBy.push(`${o.output}: ${minSnrDb !== undefined ? `SNR ${o.snrDb.toFixed(1)} dB` : `cosine ${o.cosine.toFixed(4)}`}`);
  });
  if (!accuracyJudged && result.accuracy && t.maxAccuracyDropPoints !== undefined && result.accuracy.dropPoints > t.maxAccuracyDropPoints) {
    failures.push(`top-1 accuracy drop ${result.accuracy.dropPoints.toFixed(2)} points > ${t.maxAccuracyDropPoints}`);
  }
  result.failures = failures;
  result.decidedBy = decidedBy;
  result.passed = failures.length === 0;
  return result;
}

