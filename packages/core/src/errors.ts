// Coded errors: one sorted table of stable codes, a factory per code, a hint on every error.

/** Every error code qforge can raise. Codes are stable; tests and scripts match on them. */
export const ErrorCodes = {
  E_ABORTED: 'The operation was cancelled',
  E_BACKEND_LOAD_FAILED: 'A backend plugin failed to load',
  E_BACKEND_UNAVAILABLE: 'The backend cannot run on this machine',
  E_BACKEND_UNKNOWN: 'No backend with that id is installed',
  E_CALIB_TABLE_INVALID: 'The calibration table is not valid',
  E_CALIB_TABLE_MISMATCH: 'The calibration table does not belong to this model',
  E_DATASET_EMPTY: 'The dataset yielded no samples',
  E_DATASET_INVALID: 'The dataset cannot be read for this model',
  E_DATASET_NOT_FOUND: 'The dataset does not exist',
  E_DATA_NOT_FINITE: 'The data contains NaN or Infinity',
  E_DEPENDENCY_MISSING: 'An optional package this feature needs is not installed',
  E_INPUT_SHAPE: 'The input does not match the model',
  E_INVALID_OPTION: 'An option has an invalid value',
  E_MODEL_CORRUPT: 'The model file cannot be parsed',
  E_MODEL_FORMAT_UNKNOWN: 'The file is not a model format qforge knows',
  E_MODEL_NOT_FOUND: 'The model file does not exist',
  E_NOT_REGULAR_FILE: 'The path is a FIFO, device, socket or folder where a regular file is needed',
  E_NO_BACKEND: 'No installed backend can serve the request',
  E_OUTPUT_IS_INPUT: 'The output path is one of the input files',
  E_OUTPUT_UNWRITABLE: 'The output path cannot be written',
  E_PATH_OUTSIDE_FOLDER: 'A file a model or dataset names lies outside the folder it belongs to',
  E_QUEUE_UNAVAILABLE: 'The trial queue (Redis) cannot be reached',
  E_REPORT_INVALID: 'The run report is not valid',
  E_RUNTIME_FAILED: 'The runtime failed while executing the model',
  E_SDK_MISSING: 'The vendor SDK this backend needs is missing',
  E_UNKNOWN_COMMAND: 'No command has that name',
  E_UNSUPPORTED: 'The backend does not support this operation',
  E_UNSUPPORTED_OP: 'The model contains an operator the backend cannot quantize',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Where an error happened: which backend, verb, file, node or tensor. */
export interface ErrorContext {
  backend?: string;
  operation?: string;
  path?: string;
  node?: string;
  tensor?: string;
  [key: string]: unknown;
}

export interface QforgeErrorJson {
  code: ErrorCode;
  message: string;
  hint?: string;
  context?: ErrorContext;
}

/** The one error type qforge throws on purpose. `exitCode` is 2 for every coded error. */
export class QforgeError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly context: ErrorContext;
  readonly exitCode = 2;

  constructor(code: ErrorCode, message: string, options: { hint?: string; context?: ErrorContext; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'QforgeError';
    this.code = code;
    this.hint = options.hint;
    this.context = options.context ?? {};
  }

  toJSON(): QforgeErrorJson {
    return { code: this.code, message: this.message, hint: this.hint, context: this.context };
  }
}

export function isQforgeError(e: unknown): e is QforgeError {
  return e instanceof QforgeError || (typeof e === 'object' && e !== null && (e as { name?: string }).name === 'QforgeError' && typeof (e as { code?: unknown }).code === 'string');
}

/** Wraps anything thrown into a QforgeError, keeping coded errors as they are. */
export function toQforgeError(e: unknown, fallback: ErrorCode = 'E_RUNTIME_FAILED', context: ErrorContext = {}): QforgeError {
  if (isQforgeError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new QforgeError(fallback, message, { context, cause: e, hint: 'Rerun with --verbose for details; report a bug if this persists.' });
}

export const errAborted = (operation: string) =>
  new QforgeError('E_ABORTED', `${operation} was cancelled`, { context: { operation }, hint: 'Run the command again to restart it.' });

export const errBackendLoadFailed = (pkg: string, reason: string) =>
  new QforgeError('E_BACKEND_LOAD_FAILED', `backend package ${pkg} failed to load: ${reason}`, {
    context: { package: pkg },
    hint: `Reinstall it (npm i ${pkg}) or remove it; other backends keep working.`,
  });

export const errBackendUnavailable = (backend: string, reason: string, hint?: string) =>
  new QforgeError('E_BACKEND_UNAVAILABLE', `backend ${backend} is not available: ${reason}`, {
    context: { backend },
    hint: hint ?? 'Run `qforge doctor` to see what is missing and how to fix it.',
  });

export const errBackendUnknown = (id: string, known: string[]) =>
  new QforgeError('E_BACKEND_UNKNOWN', `no backend "${id}" is installed (installed: ${known.join(', ') || 'none'})`, {
    context: { backend: id },
    hint: 'List installed backends with `qforge backends`; install one with `qforge plugins install <package>`.',
  });

export const errCalibTableInvalid = (path: string, reason: string) =>
  new QforgeError('E_CALIB_TABLE_INVALID', `calibration table ${path} is not valid: ${reason}`, {
    context: { path },
    hint: 'Recreate it with `qforge calibrate <model> --data <dataset> -o <table.json>`.',
  });

export const errCalibTableMismatch = (reason: string, context: ErrorContext = {}) =>
  new QforgeError('E_CALIB_TABLE_MISMATCH', `calibration table does not match the model: ${reason}`, {
    context,
    hint: 'A table is tied to the exact model it was computed on; recalibrate this model or pass the right table.',
  });

export const errDatasetEmpty = (source: string) =>
  new QforgeError('E_DATASET_EMPTY', `dataset ${source} yielded no samples`, {
    context: { path: source },
    hint: 'Point --data at a folder of images or .npy files, or use `random` / `mnist`.',
  });

export const errDatasetInvalid = (source: string, reason: string, hint?: string) =>
  new QforgeError('E_DATASET_INVALID', `dataset ${source} cannot be used: ${reason}`, {
    context: { path: source },
    hint: hint ?? 'Check the dataset layout in docs/datasets.md and the model inputs with `qforge inspect`.',
  });

export const errDatasetNotFound = (source: string) =>
  new QforgeError('E_DATASET_NOT_FOUND', `dataset ${source} does not exist`, {
    context: { path: source },
    hint: 'Pass an existing folder or .npy file, or one of the built-in datasets: random, mnist.',
  });

export const errDataNotFinite = (where: string, context: ErrorContext = {}) =>
  new QforgeError('E_DATA_NOT_FINITE', `${where} contains NaN or Infinity`, {
    context,
    hint: 'Clean the data (or fix the preprocessing) so every value is a finite number.',
  });

export const errDependencyMissing = (pkg: string, feature: string, cause?: unknown) =>
  new QforgeError('E_DEPENDENCY_MISSING', `${feature} needs the package ${pkg}, which is not installed or does not load${cause instanceof Error ? ` (${cause.message.split('\n')[0]})` : ''}`, {
    context: { package: pkg, feature },
    hint: `Install it next to @qforge/core: npm install ${pkg}. (@qforge/cli installs it for you.)`,
    cause,
  });

export const errInputShape = (input: string, expected: readonly (number | string | null)[], actual: readonly number[], context: ErrorContext = {}, detail?: { message?: string; hint?: string }) =>
  new QforgeError('E_INPUT_SHAPE', detail?.message ?? `input "${input}" expects shape [${expected.map((d) => d ?? '?').join(',')}] but got [${actual.join(',')}]`, {
    context: { tensor: input, declared: expected, actual, ...context },
    hint: detail?.hint ?? 'Check the model inputs with `qforge inspect <model>`; the data must have the input\'s rank and its fixed dims (docs/datasets.md).',
  });

export const errInvalidOption = (option: string, reason: string, hint?: string) =>
  new QforgeError('E_INVALID_OPTION', `option ${option}: ${reason}`, { context: { option }, hint: hint ?? 'See `qforge <command> --help`.' });

/**
 * A model that cannot be read, or (with `graph`) whose graph breaks ONNX's rules at a named node:
 * ONNX Runtime would refuse it at session creation.
 */
export const errModelCorrupt = (path: string, reason: string, graph?: { node: string; opType: string; tensor?: string }) =>
  graph
    ? new QforgeError('E_MODEL_CORRUPT', `model ${path} is not a valid graph: ${reason}`, {
        context: { path, ...graph },
        hint: 'The exporter or an edit left the graph broken; ONNX Runtime refuses it as well. Re-export the model, or locate the problem with onnx.checker.check_model(model, full_check=True).',
      })
    : new QforgeError('E_MODEL_CORRUPT', `model ${path} cannot be parsed: ${reason}`, {
        context: { path },
        hint: 'Check that the file is complete (not truncated by a download) and was exported correctly.',
      });

export const errModelFormatUnknown = (path: string) =>
  new QforgeError('E_MODEL_FORMAT_UNKNOWN', `${path} is not a model format qforge knows`, {
    context: { path },
    hint: 'qforge reads ONNX (.onnx), TensorFlow.js (model.json) and TFLite (.tflite) models.',
  });

export const errModelNotFound = (path: string) =>
  new QforgeError('E_MODEL_NOT_FOUND', `model ${path} does not exist`, { context: { path }, hint: 'Check the path; it is resolved against the current directory.' });

export const errNotRegularFile = (path: string, what: string, kind: string) =>
  new QforgeError('E_NOT_REGULAR_FILE', `${what} ${path} is ${kind}, not a regular file`, {
    context: { path, kind },
    hint: 'Pass a regular file; FIFOs, devices and sockets are never read (they could block or never end).',
  });

export const errNoBackend = (request: string, reasons: { backend: string; reason: string }[]) =>
  new QforgeError(
    'E_NO_BACKEND',
    `no backend can ${request}:${reasons.length ? reasons.map((r) => `\n  - ${r.backend}: ${r.reason}`).join('') : ' no backends are installed'}`,
    { context: { reasons }, hint: 'Run `qforge doctor`; install a backend for your target with `qforge plugins install <package>`.' },
  );

export const errOutputIsInput = (output: string, input: string) =>
  new QforgeError('E_OUTPUT_IS_INPUT', `output ${output} is the input file ${input}; writing it would destroy the input`, {
    context: { path: output, input },
    hint: 'Write the result to a new path (e.g. model.int8.onnx); inputs are never modified.',
  });

export const errOutputUnwritable = (path: string, reason: string, cause?: unknown) =>
  new QforgeError('E_OUTPUT_UNWRITABLE', `cannot write ${path}: ${reason}`, {
    context: { path, ...(cause && typeof (cause as { code?: unknown }).code === 'string' ? { errno: (cause as { code: string }).code } : {}) },
    hint: 'Choose a path in a folder you can write to (-o / --runs-dir) on a device with free space.',
    cause,
  });

export const errPathOutsideFolder = (path: string, folder: string, what: string, real?: string) =>
  new QforgeError('E_PATH_OUTSIDE_FOLDER', `${what} ${path} ${real && real !== path ? `resolves to ${real}, ` : ''}outside ${folder}, the folder it belongs to`, {
    context: { path, folder, ...(real ? { real } : {}) },
    hint: 'Copy the file into that folder instead of linking to it; qforge reads a model\'s shards and external data only beside the model, and a dataset only inside its folder.',
  });

/** `url` must already be redacted: queue URLs may carry a password. */
export const errQueueUnavailable = (url: string, reason: string, cause?: unknown) =>
  new QforgeError('E_QUEUE_UNAVAILABLE', `the trial queue at ${url} cannot be reached: ${reason}`, {
    context: { url },
    hint: 'Start Redis (`redis-server --port 6379`, see docs/scale-out.md) or pass another --queue redis://host:port; without --queue everything runs in this process.',
    cause,
  });

export const errReportInvalid = (path: string, reason: string) =>
  new QforgeError('E_REPORT_INVALID', `run report ${path} is not valid: ${reason}`, {
    context: { path },
    hint: 'The run may be half-written or from an incompatible qforge version; rerun it.',
  });

export const errRuntimeFailed = (backend: string, operation: string, reason: string, context: ErrorContext = {}) =>
  new QforgeError('E_RUNTIME_FAILED', `${backend} failed during ${operation}: ${reason}`, {
    context: { backend, operation, ...context },
    hint: 'Check that the model runs in its runtime on its own; rerun with --verbose for details.',
  });

export const errSdkMissing = (backend: string, missing: string, install: string) =>
  new QforgeError('E_SDK_MISSING', `backend ${backend} needs ${missing}, which is not installed or not usable`, {
    context: { backend, missing },
    hint: install,
  });

/** A mistyped command, with the closest real ones (`plugins install`, spelled as typed). */
export const errUnknownCommand = (command: string, suggestions: string[], bin = 'qforge') =>
  new QforgeError('E_UNKNOWN_COMMAND', `"${command}" is not a ${bin} command`, {
    context: { command, suggestions },
    hint: `${suggestions.length ? `Did you mean ${suggestions.map((s) => `\`${bin} ${s}\``).join(' or ')}? ` : ''}Run \`${bin} help\` for the list of commands.`,
  });

export const errUnsupported = (backend: string, operation: string, reason: string) =>
  new QforgeError('E_UNSUPPORTED', `backend ${backend} does not support ${operation}: ${reason}`, {
    context: { backend, operation },
    hint: 'See `qforge backends` for what each backend can do, or pick another with --backend.',
  });

export const errUnsupportedOp = (backend: string, ops: string[], context: ErrorContext = {}) =>
  new QforgeError('E_UNSUPPORTED_OP', `backend ${backend} cannot quantize operator(s): ${ops.join(', ')}`, {
    context: { backend, ops, ...context },
    hint: 'Keep those layers in float with --exclude-nodes, or ask for a float fallback where the backend offers one.',
  });
