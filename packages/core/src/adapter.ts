// Base for adapters over vendor SDKs: detection is theirs; every verb they lack fails with one code.
import type { Backend, BackendCapabilities, BenchmarkResult, Detection, ModelInfo, QuantizeResult, Verb, VerifyResult } from './contract';
import type { CalibrationTable } from './calibration-table';
import type { TensorInfo } from './tensor';
import { errSdkMissing, errUnsupported } from './errors';

export abstract class SdkAdapterBackend implements Backend {
  abstract readonly id: string;
  abstract readonly displayName: string;
  abstract readonly packageName: string;
  abstract readonly version: string;
  abstract readonly capabilities: BackendCapabilities;
  /** What the SDK is called and how to install it, for E_SDK_MISSING. */
  protected abstract readonly sdk: { name: string; install: string };
  private detection?: Promise<Detection>;

  protected abstract probe(): Promise<Detection>;

  detect(): Promise<Detection> {
    this.detection ??= this.probe().catch((e: unknown) => ({ available: false, reason: `probe failed: ${(e as Error).message}`, hint: this.sdk.install }));
    return this.detection;
  }

  /** Missing SDK → E_SDK_MISSING naming it; SDK present but verb not offered → E_UNSUPPORTED. */
  protected async refuse(verb: Verb): Promise<never> {
    const d = await this.detect();
    if (!d.available) throw errSdkMissing(this.id, `${this.sdk.name} (${d.reason ?? 'not found'})`, d.hint ?? this.sdk.install);
    throw errUnsupported(this.id, verb, `the ${this.displayName} adapter only detects the SDK in this release; see \`qforge backends\` for what it offers`);
  }

  inspect(): Promise<ModelInfo> {
    return this.refuse('inspect');
  }
  modelInputs(): Promise<TensorInfo[]> {
    return this.refuse('inspect');
  }
  calibrate(): Promise<CalibrationTable> {
    return this.refuse('calibrate');
  }
  quantize(): Promise<QuantizeResult> {
    return this.refuse('quantize');
  }
  benchmark(): Promise<BenchmarkResult> {
    return this.refuse('benchmark');
  }
  verify(): Promise<VerifyResult> {
    return this.refuse('verify');
  }
}
