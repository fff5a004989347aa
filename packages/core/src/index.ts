// @qforge/core: the public API. Nothing else in this package is meant to be imported.
export type {
  Backend,
  BackendCapabilities,
  BackendFactory,
  BenchmarkOptions,
  BenchmarkResult,
  CalibrateOptions,
  CalibrationMethod,
  Detection,
  GraphChange,
  Granularity,
  ModelBenchmark,
  ModelFormat,
  ModelInfo,
  ModelRef,
  NodeDecision,
  QuantFormat,
  QuantizeOptions,
  WeightOnlyOptions,
  ExternalDataOptions,
  QatOptions,
  QuantizeResult,
  OpFamily,
  QuantMode,
  QuantType,
  Verb,
  VerifyOptions,
  VerifyResult,
  ValueHistogram,
  VerifyThresholds,
} from './contract';
export { defineCapabilities } from './contract';
export { createRunContext, silentLogger, throwIfAborted } from './context';
export type { Logger, ProgressEvent, RunContext, RunPhase } from './context';
export {
  ErrorCodes,
  QforgeError,
  errAborted,
  errBackendLoadFailed,
  errBackendUnavailable,
  errBackendUnknown,
  errCalibTableInvalid,
  errCalibTableMismatch,
  errDataNotFinite,
  errDatasetEmpty,
  errDatasetInvalid,
  errDatasetNotFound,
  errInputShape,
  errInvalidOption,
  errModelCorrupt,
  errModelFormatUnknown,
  errModelNotFound,
  errDependencyMissing,
  errNotRegularFile,
  errPathOutsideFolder,
  errNoBackend,
  errOutputIsInput,
  errOutputUnwritable,
  errQueueUnavailable,
  errReportInvalid,
  errRuntimeFailed,
  errSdkMissing,
  errUnknownCommand,
  errUnsupported,
  errUnsupportedOp,
  isQforgeError,
  toQforgeError,
} from './errors';
export type { ErrorCode, ErrorContext, QforgeErrorJson } from './errors';
export { TARGET_PROFILES, detectTargetProfile, quantizeOptionsFor, readCpuInfo, resolveTargetProfile } from './target';
export type { CpuInfo, TargetDefaults, TargetId, TargetProfile } from './target';
export {
  dequantizeTensor,
  quantizeBias,
  quantizePerAxis,
  quantizeWeights,
  quantizeWithScales,
  widenScalesForBias,
  quantizeTensor,
  quantRange,
  rangesPerAxis,
  roundHalfEven,
  scaleFromRange,
} from './quant-math';
export type { PerAxisQuantized, QuantizedArray, QuantParams, QuantRangeOptions } from './quant-math';
export { Histogram, RunningMinMax, TensorStatistics, chooseRange, entropyThreshold, methodNeedsHistogram, mseRange, valueHistogram } from './stats';
export type { HistogramJson, RangeChoiceOptions } from './stats';
export { AccuracyAccumulator, FidelityAccumulator, SNR_CAP_DB, argmax, cosineSimilarity, snrDb, topKIndices } from './metrics';
export type { LayerError, OutputFidelity } from './metrics';
export {
  DEFAULT_BENCH_MAX_RUNS,
  DEFAULT_BENCH_MIN_TIME_MS,
  estimateSpeedup,
  formatSpeedup,
  measureAlternately,
  measurementPlan,
  median,
  percentile,
  summarizeLatencies,
  throughputPerSec,
} from './bench-stats';
export type { LatencyStats, MeasuredModel, MeasurementPlan, SpeedupEstimate } from './bench-stats';
export { CORRECTION_NOISE, decideCorrections } from './corrections';
export { DEFAULT_LATENCY_BUDGET_MS, benchmarkTimer, chooseForLatency } from './latency-search';
export type { LatencyChoices, LatencySearchInput, LatencySearchResult, LatencyStep, LatencyTimer } from './latency-search';
export type { Correction, CorrectionDecision, CorrectionRecord, QuantizationRecipe } from './corrections';
export {
  CALIBRATION_TABLE_VERSION,
  assertTableMatches,
  readCalibrationTable,
  validateCalibrationTable,
  writeCalibrationTable,
  buildCalibrationTable,
} from './calibration-table';
export type { CalibrationTable, TensorCalibration } from './calibration-table';
export { REPORT_SCHEMA_VERSION, formatRunSummary, readRunReport, validateRunReport } from './report';
export type { ArtifactRecord, RunReport, Verdict } from './report';
export { BACKEND_FACTORY, BackendRegistry, discoverPlugins } from './registry';
export type { DiscoveredPlugin, PluginLoadFailure, PluginManifest } from './registry';
export { assertOutputNotInput, assertRegularFile, checkOutputPath, copyFileAtomic, detectModelFormat, ensureWritable, isInsideFolder, modelInputFiles, modelRef, modelSizeBytes, resolveInsideFolder, sha256Async, sha256Bytes, sha256File, writeFileAtomic } from './files';
export type { ContainedPathOptions } from './files';
export { MAX_SAMPLES, beginWorkDir, endWorkDir, partialRunDirName, preflightRun, removeActiveWorkDirs, removeStalePartials } from './run-dir';
export type { RunPreflight } from './run-dir';
export { concreteShape, elementCount, firstNonFinite, float32Tensor, withInputShapes } from './tensor';
export type { Tensor, TensorDType, TensorInfo } from './tensor';
export { MNIST_SPLITS, assertFiniteSample, firstSample, imagePreprocessingFor, imageToTensorData, mulberry32, openDataset } from './datasets/open';
export type { OpenDatasetOptions } from './datasets/open';
export { encodeNpy, parseNpy, readNpy } from './datasets/npy';
export type { NpyArray } from './datasets/npy';
export { encodeNpz } from './datasets/npz';
export { checkSample, conformDataset, fillFromData, syntheticDims } from './datasets/shapes';
export { datasetFromIterable } from './datasets/custom';
export type { IterableDatasetOptions, UserSample, UserSampleSource } from './datasets/custom';
export type { Dataset, DatasetDescription, DatasetKind, ImagePreprocessing, Layout, Sample } from './datasets/dataset';
export { CORE_VERSION } from './version';
export { judgeVerification } from './verdict';
export { DEFAULT_MAP_THRESHOLD, DEFAULT_TASK_THRESHOLDS, MIN_LM_VOCABULARY, OutputAccumulator, TASK_KINDS, ctcGreedy, ctcText, describeTaskMetric, detectTask, editDistance, parseTaskFlags, readCharset, signedPercent } from './tasks';
export type { AccuracyPair, CtcOptions, TaskFidelity, TaskKind, TaskLabel, TaskOptions } from './tasks';
export { findLabelFile, readLabelFile, withLabelFile } from './datasets/labels';
export { SdkAdapterBackend } from './adapter';
export { runProbe } from './probe';
export type { ProbeResult } from './probe';
export { DEFAULT_CALIBRATION_SAMPLES, DEFAULT_RECOVER_BUDGET_MS, recordSensitivityRun, runQuantize } from './pipeline';
export type { QuantizeRunOptions, QuantizeRunResult } from './pipeline';
export { METRIC_KINDS, Trial, analyzeSensitivity, deriveTable, meets, parseAccuracyTarget, score, searchForTarget, spearman } from './tuning';
export type { AccuracyTarget, EvalPlan, LayerSensitivity, MetricKind, SearchResult, SearchStep, SensitivityResult, TrialPlan, TrialRunner, TrialScore, TrialVariant } from './tuning';
