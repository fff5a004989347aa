// Pass/fail of a verification against its thresholds, judged the same way for every backend.
import type { VerifyResult } from './contract';

export function judgeVerification(result: VerifyResult): VerifyResult {
  const t = result.thresholds;
  const failures: string[] = [];
  for (const o of result.outputs) {
    if (t.minSnrDb !== undefined && o.snrDb < t.minSnrDb) failures.push(`${o.output}: SNR ${o.snrDb.toFixed(1)} dB < ${t.minSnrDb} dB`);
    if (t.minCosine !== undefined && o.cosine < t.minCosine) failures.push(`${o.output}: cosine ${o.cosine.toFixed(4)} < ${t.minCosine}`);
  }
  if (result.accuracy && t.maxAccuracyDropPoints !== undefined && result.accuracy.dropPoints > t.maxAccuracyDropPoints) {
    failures.push(`top-1 accuracy drop ${result.accuracy.dropPoints.toFixed(2)} points > ${t.maxAccuracyDropPoints}`);
  }
  result.failures = failures;
  result.passed = failures.length === 0;
  return result;
}
