// The backend contract: four verbs (calibrate, quantize, benchmark, verify) plus discovery.
import type { CalibrationTable } from './calibration-table';
import type { RunContext } from './context';
import type { Dataset } from './datasets/dataset';
import type { LatencyStats, SpeedupEstimate } from './bench-stats';
import type { OutputFidelity, LayerError } from './metrics';
import type { TaskOptions } from './tasks';
import type { TargetId, TargetProfile } from './target';
import type { TensorInfo } from './tensor';

export type ModelFormat = 'onnx' | 'tfjs-layers' | 'tfjs-graph' | 'tflite';
export type QuantType = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int4' | 'uint4';
/** `fp16`: float16 weights and compute (no integers); `weight-only`: integer weights, float compute. */
export type QuantMode = 'static' | 'dynamic' | 'weight-only' | 'fp16';
export type QuantFormat = 'qdq' | 'qoperator';
export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy' | 'mse';
/** `per-block`: one scale per block of consecutive weights along the reduction axis (4-bit formats). */
export type Granularity = 'per-tensor' | 'per-channel' | 'per-block';
export type Verb = 'inspect' | 'calibrate' | 'quantize' | 'benchmark' | 'verify';

/** A model on disk and its format. */
export interface ModelRef {
  path: string;
  format: ModelFormat;
}

/** What `inspect` learns about a model. */
export interface ModelInfo {
  path: string;
  format: ModelFormat;
  sizeBytes: number;
  sha256: string;
  producer?: string;
  opset?: number;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** Operator type → count. */
  opHistogram: Record<string, number>;
  parameterCount: number;
  /** Notes a user should know (external data, unknown shapes, …). */
  notes?: string[];
}

/** Whether a backend can run here. `detect()` never throws. */
export interface Detection {
  available: boolean;
  /** Version of the SDK or runtime the backend drives. */
  version?: string;
  runtime?: string;
  reason?: string;
  hint?: string;
  details?: Record<string, unknown>;
}

export interface BackendCapabilities {
  inputFormats: ModelFormat[];
  outputFormats: ModelFormat[];
  /** Verbs this backend implements; the rest fail with E_UNSUPPORTED. */
  verbs: Verb[];
  modes: QuantMode[];
  quantFormats: QuantFormat[];
  calibrationMethods: CalibrationMethod[];
  weightTypes: QuantType[];
  activationTypes: QuantType[];
  granularity: Granularity[];
  targets: TargetId[];
  /** Plain statements of what the backend does and does not do. */
  notes: string[];
  /** Fine-tuning the backend offers (`qat`: quantization-aware training). @defaultValue [] */
  training?: 'qat'[];
  /**
   * Op families static quantization can switch on or off through `opTypes` (pass-through ops
   * follow their inputs and are not listed): the latency search tries the opt-in ones.
   * @defaultValue [] (no latency search over families)
   */
  opFamilies?: OpFamily[];
  /**
   * The backend writes `QuantizeOptions.storageOnly` models: int8-stored weights dequantized once
   * at load, float compute — the fallback when int8 kernels are slower than fp32. @defaultValue false
   */
  storageOnly?: boolean;
}

/** An op family the backend can switch on or off in static quantization. */
export interface OpFamily {
  /** Its name in reports ("element-wise", "pooling"). */
  family: string;
  opTypes: string[];
  /** Quantized when `QuantizeOptions.opTypes` is empty (the backend's default set). */
  byDefault: boolean;
}

export interface CalibrateOptions {
  /** @defaultValue the target profile's method */
  method: CalibrationMethod;
  /** Upper bound on samples read from the dataset (`runQuantize` and the CLI pass `DEFAULT_CALIBRATION_SAMPLES`, 256, when none is named). */
  samples: number;
  /** Percentile kept by the `percentile` method. @defaultValue 99.999 */
  percentile?: number;
  /** Moving-average constant for `minmax`; absent means plain min/max. */
  movingAverage?: number;
  /** Histogram bins per side for histogram-based methods. @defaultValue 2048 */
  bins?: number;
  target: TargetProfile;
  /** Activation type the ranges are chosen for (entropy/mse need it). */
  activationType?: QuantType;
  /** Keep each tensor's histogram in the table, so other methods can be derived without recalibrating. */
  keepHistograms?: boolean;
  /** Cross-layer equalization before calibrating; quantize must be asked for it too. */
  equalize?: boolean;
}

export interface QuantizeOptions {
  output: string;
  target: TargetProfile;
  mode: QuantMode;
  format: QuantFormat;
  perChannel: boolean;
  activationType: QuantType;
  weightType: QuantType;
  reduceRange: boolean;
  symmetricWeights: boolean;
  /** Node names to keep in float. */
  excludeNodes: string[];
  /** Restrict quantization to these operator types; empty = the backend's default set. */
  opTypes: string[];
  /**
   * Nodes whose input and output activations use 16 bits (W8A16: weights stay 8-bit), a middle
   * step between int8 and float for sensitive layers where the runtime supports it.
   */
  activation16Nodes?: string[];
  /**
   * Shift each quantized layer's bias by the mean error quantization introduces on
   * `correctionData` (empirical bias correction). @defaultValue false
   */
  biasCorrection?: boolean;
  /** Cross-layer equalization of Conv → Relu/MaxPool → Conv pairs before quantizing. @defaultValue false */
  equalize?: boolean;
  /** Samples for corrections and algorithms that need data (bias correction, GPTQ); usually the calibration data. */
  correctionData?: Dataset;
  /** @defaultValue 32 */
  correctionSamples?: number;
  /**
   * Full-integer formats (TFLite): model inputs and outputs stay float32 (QUANTIZE/DEQUANTIZE at
   * the edges) or are int8. @defaultValue 'float32'
   */
  ioType?: 'float32' | 'int8';
  /** Settings of `mode: 'weight-only'` for backends that offer several weight widths (ONNX). */
  weightOnly?: WeightOnlyOptions;
  /**
   * Quantization-aware training, for backends whose `capabilities.training` lists `qat`: the
   * fake-quantized model is fine-tuned on the labeled `correctionData` before it is written.
   * Absent: plain post-training quantization.
   */
  qat?: QatOptions;
  /**
   * Store the weights int8 and dequantize them once when the model loads; every op computes in
   * float, so the model runs at fp32 speed (backends whose capabilities set `storageOnly`). The
   * latency search writes it when int8 kernels are slower than fp32. @defaultValue false
   */
  storageOnly?: boolean;
  /** How a model too large for one protobuf is written beside its external data (backends that write ONNX). */
  externalData?: ExternalDataOptions;
  /** Backend-specific extras, recorded in the report. */
  extra?: Record<string, unknown>;
}

/** Where an ONNX model's weights go when they do not fit in the model file. */
export interface ExternalDataOptions {
  /**
   * The side file's name, beside the model (transformers.js fetches `<model file>_data`).
   * @defaultValue `<model file>.data`, ONNX's own convention
   */
  fileName?: string;
  /**
   * Weights above this many bytes in all go to the side file. Lower it to force a side file (tests).
   * @defaultValue about 1.8 GiB, protobuf's limit with margin
   */
  inlineLimitBytes?: number;
}

/** Settings of quantization-aware training (`--qat`). The training data is `correctionData`. */
export interface QatOptions {
  /** Passes over the training data. @defaultValue 1 */
  epochs: number;
  /** Adam learning rate. @defaultValue 1e-4 */
  learningRate: number;
  /** Samples per gradient step. @defaultValue 32 */
  batchSize: number;
}

/** Weight-only quantization: integer weights in blocks along the reduction axis, float activations. */
export interface WeightOnlyOptions {
  /** Bits per weight. @defaultValue 4 */
  bits: 4 | 8;
  /** Weights per block (one scale, and one zero point unless symmetric, each). @defaultValue 32 */
  blockSize: number;
  /** Symmetric blocks carry no zero points. @defaultValue false */
  symmetric: boolean;
  /**
   * `rtn` rounds each weight to nearest; `gptq` compensates each rounding error on the weights not
   * yet rounded, using the layer's input statistics from `correctionData`. @defaultValue 'rtn'
   */
  algorithm: 'rtn' | 'gptq';
  /** MatMuls kept in float by position: the first, and the last (usually the LM head). @defaultValue [] */
  keepFloat?: ('first' | 'last')[];
  /**
   * Bits per value of embedding tables (Gather over a constant table → GatherBlockQuantized, same
   * block size and symmetry). A table tied to a quantized LM head shares the head's storage when
   * this equals `bits`. @defaultValue 8
   */
  embeddingBits?: 4 | 8;
}

/** One graph change made while preparing or quantizing, as recorded in the report. */
export interface GraphChange {
  kind: string;
  node?: string;
  detail: string;
}

/** A value distribution small enough for reports: `bins` equal-width counts over [min, max]. */
export interface ValueHistogram {
  tensor: string;
  min: number;
  max: number;
  bins: number[];
}

export interface NodeDecision {
  node: string;
  opType: string;
  quantized: boolean;
  /** The float weights' distribution, for plots. */
  weightHistogram?: ValueHistogram;
  reason?: string;
  weightType?: QuantType;
  activationType?: QuantType;
  granularity?: Granularity;
}

export interface QuantizeResult {
  model: ModelRef;
  sizeBytes: number;
  preparation: GraphChange[];
  decisions: NodeDecision[];
  /** Additional artifacts written beside the model (path → description). */
  artifacts?: Record<string, string>;
}

export interface BenchmarkOptions {
  /** @defaultValue 1 */
  threads: number;
  /** @defaultValue 5 */
  warmup: number;
  /** Timed runs per model at least. @defaultValue 30 */
  runs: number;
  /**
   * Keep measuring until each model has this much timed latency (ms), so sub-millisecond models get
   * enough runs for a stable median. @defaultValue 0 (exactly `runs` runs)
   */
  minTimeMs?: number;
  /** Timed runs per model at most, whatever `minTimeMs` asks. @defaultValue 5000 */
  maxRuns?: number;
  /** Inputs to feed; absent means the backend builds fixed random inputs from the model. */
  dataset?: Dataset;
  /** Measured alternately with the main model in one run, when given. */
  compare?: ModelRef;
}

export interface ModelBenchmark {
  model: ModelRef;
  latencyMs: LatencyStats;
  throughputPerSec: number;
  loadTimeMs: number;
  /** Resident set size growth while loading and running, in bytes. */
  peakRssBytes: number;
  threads: number;
}

export interface BenchmarkResult {
  backend: string;
  runtime: string;
  target: string;
  primary: ModelBenchmark;
  compare?: ModelBenchmark;
  /**
   * median(compare latency) / median(primary latency): above 1 means `primary` is faster. The same
   * number as `speedupEstimate.median`, kept as a plain number for readers of older reports.
   */
  speedup?: number;
  /** The ratio with its 95% paired-bootstrap interval (`estimateSpeedup`). */
  speedupEstimate?: SpeedupEstimate;
  /**
   * Set when the two models ran in different runtimes (e.g. int8 in the TFLite interpreter against
   * fp32 in TensorFlow.js): the ratio then mixes runtime and quantization effects.
   */
  crossRuntime?: { primary: string; compare: string };
  /** Input name → the concrete dims the models were timed with. */
  inputShapes?: Record<string, number[]>;
}

/**
 * Pass/fail limits. Each output is judged by its task metric (tasks.ts) with the defaults in
 * `DEFAULT_TASK_THRESHOLDS` unless set here; SNR and cosine judge only when given.
 */
export interface VerifyThresholds {
  /** Minimum SNR (dB) of every output; judged only when set. */
  minSnrDb?: number;
  /** Minimum cosine similarity per output; judged only when set. */
  minCosine?: number;
  /** Maximum top-1 accuracy drop in points (needs labels). @defaultValue 1 */
  maxAccuracyDropPoints?: number;
  /** Class scores without labels: share of samples with the same arg-max. @defaultValue 0.98 */
  minTop1Agreement?: number;
  /** Probability/score maps: IoU of the binarized maps. @defaultValue 0.93 */
  minIou?: number;
  /** Sequences without CTC: share of positions with the same arg-max. @defaultValue 0.95 */
  minPositionAgreement?: number;
  /** Sequences with CTC, no labels: share of lines decoded to the same string. @defaultValue 0.9 */
  minLineAgreement?: number;
  /** Sequences with CTC and string labels: line accuracy drop in points. @defaultValue 3 */
  maxLineAccuracyDropPoints?: number;
  /** Embeddings/regression: ‖ref − cand‖ / ‖ref‖. @defaultValue 0.1 */
  maxRelativeError?: number;
  /** Language models: perplexity increase over fp32 in percent. @defaultValue 1 */
  maxPerplexityIncreasePercent?: number;
}

export interface VerifyOptions extends TaskOptions {
  samples: number;
  thresholds: VerifyThresholds;
  topK?: number;
  /** Compute error at each quantized tensor (costly; backends that cannot see layers ignore it). */
  perLayer?: boolean;
}

export interface VerifyResult {
  samples: number;
  labeled: boolean;
  outputs: OutputFidelity[];
  accuracy?: { reference: number; candidate: number; dropPoints: number };
  layers?: LayerError[];
  thresholds: VerifyThresholds;
  passed: boolean;
  failures: string[];
  /** The metric that decided each output, with its value and limit (`det: map IoU 0.962 ≥ 0.93`). */
  decidedBy?: string[];
}

/** A backend: the only thing a plugin has to implement. */
export interface Backend {
  readonly id: string;
  readonly displayName: string;
  readonly packageName: string;
  readonly version: string;
  readonly capabilities: BackendCapabilities;
  detect(): Promise<Detection>;
  inspect(model: ModelRef, ctx: RunContext): Promise<ModelInfo>;
  calibrate(model: ModelRef, dataset: Dataset, options: CalibrateOptions, ctx: RunContext): Promise<CalibrationTable>;
  quantize(model: ModelRef, table: CalibrationTable | undefined, options: QuantizeOptions, ctx: RunContext): Promise<QuantizeResult>;
  benchmark(model: ModelRef, options: BenchmarkOptions, ctx: RunContext): Promise<BenchmarkResult>;
  verify(reference: ModelRef, candidate: ModelRef, dataset: Dataset, options: VerifyOptions, ctx: RunContext): Promise<VerifyResult>;
  /** Input description used to shape datasets (`random`, image folders). */
  modelInputs(model: ModelRef, ctx: RunContext): Promise<TensorInfo[]>;
}

/** What a plugin's entry module exports: a factory the registry calls once. */
export interface BackendFactory {
  id: string;
  create(): Backend;
}

/** Capabilities with every list empty except those given: for adapters and small backends. */
export function defineCapabilities(partial: Partial<BackendCapabilities>): BackendCapabilities {
  return {
    inputFormats: [],
    outputFormats: [],
    verbs: [],
    modes: [],
    quantFormats: [],
    calibrationMethods: [],
    weightTypes: [],
    activationTypes: [],
    granularity: [],
    targets: [],
    notes: [],
    ...partial,
  };
}
