// The backend conformance suite, written once and run by every backend from its own Jest tests.
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ErrorCodes,
  createRunContext,
  isQforgeError,
  median,
  modelRef,
  openDataset,
  quantizeOptionsFor,
  modelSizeBytes,
  resolveTargetProfile,
  validateCalibrationTable,
  type Backend,
  type BackendFactory,
  type CalibrationTable,
  type Detection,
  type ModelRef,
  type QuantizeOptions,
  type QuantizeResult,
  type Verb,
  type VerifyThresholds,
} from '@qforge/core';

export interface ConformanceFixtures {
  /** A model the backend reads (path). Needed by every verb suite the backend declares. */
  model?: string;
  /** A dataset spec the model accepts (e.g. `mnist:calib`, `random`, a folder). @defaultValue 'random' */
  dataset?: string;
  /** Samples per calibrate/verify call; keep small. @defaultValue 8 */
  samples?: number;
  /**
   * Writes a copy of `model` into `dir` that computes clearly different outputs from the same
   * inputs (weights negated or noised, say). `verify` must FAIL it. Without it the kit shows that
   * verify can fail by raising the SNR threshold above what it measured on the quantized model
   * (needs `quantize`); a backend declaring `verify` without either fails the kit.
   */
  perturb?: (model: ModelRef, dir: string) => ModelRef | Promise<ModelRef>;
  /** Thresholds the backend's own quantized fixture model must pass. @defaultValue `{ minSnrDb: 20 }` */
  quantizedThresholds?: VerifyThresholds;
}

export interface ConformanceOptions {
  factory: BackendFactory;
  fixtures?: ConformanceFixtures;
  /** Suites the backend cannot pass, each with the reason (they are reported as skipped, never silently). */
  exclude?: Partial<Record<ConformanceSuite, string>>;
  /**
   * The backend's detection, made before the tests were registered (Jest registers tests
   * synchronously; `detect()` is async). With it, suites that need the backend to run are skipped
   * with its reason when it says unavailable. Without it, declaring a verb is a claim that the
   * backend runs here: those suites FAIL, with detect()'s reason, when it does not.
   */
  detection?: Detection;
  /** @defaultValue 20000 */
  detectTimeoutMs?: number;
}

export type ConformanceSuite = 'contract' | 'detect' | 'undeclared-verbs' | 'inspect' | 'calibrate' | 'quantize' | 'benchmark' | 'verify' | 'errors';

const VERBS: Verb[] = ['inspect', 'calibrate', 'quantize', 'benchmark', 'verify'];

function expectCoded(e: unknown, codes: string[]): void {
  expect(isQforgeError(e)).toBe(true);
  expect(codes).toContain((e as { code: string }).code);
  expect(Object.keys(ErrorCodes)).toContain((e as { code: string }).code);
}

async function rejectsWith(p: Promise<unknown>, codes: string[]): Promise<void> {
  let thrown: unknown;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeDefined();
  expectCoded(thrown, codes);
}

/** The target a user's `--target auto` gets with this backend. */
function targetOf(backend: Backend) {
  return resolveTargetProfile('auto', undefined, backend.capabilities.targets);
}

function aborted() {
  const ac = new AbortController();
  ac.abort();
  return createRunContext({ signal: ac.signal });
}

/**
 * Registers Jest suites that check a backend against the qforge contract. What applies is decided
 * here, while tests are registered: a verb the backend does not declare, a suite excluded with a
 * reason, or a backend that `options.detection` says cannot run here becomes `it.skip` with the
 * reason in its title. Every registered test asserts something; none returns early.
 */
export function runBackendConformance(options: ConformanceOptions): void {
  const { factory, fixtures = {}, exclude = {}, detection: given } = options;
  const samples = fixtures.samples ?? 8;
  // create() is synchronous and cheap by contract, so capabilities are known at registration.
  const backend: Backend = factory.create();
  const declared = new Set(backend.capabilities.verbs);
  let detection: Detection;
  const ctx = createRunContext();
  const work = mkdtempSync(join(tmpdir(), `qforge-conformance-${factory.id}-`));
  const unavailable = given && !given.available ? `unavailable here: ${given.reason ?? 'no reason given'}` : undefined;

  const suite = (name: ConformanceSuite, body: () => void) => {
    if (exclude[name]) {
      describe(`${name} (excluded)`, () => it.skip(`excluded by the backend: ${exclude[name]}`, () => undefined));
      return;
    }
    describe(name, body);
  };

  /** Why a verb's checks cannot run here, decided at registration; undefined when they run. */
  const skipReason = (verb: Verb): string | undefined => {
    if (!declared.has(verb)) return `${verb} is not declared in capabilities.verbs (undeclared-verbs checks it fails with a coded error)`;
    return unavailable;
  };

  /** A declared verb is a claim that it runs here: an unavailable backend or a missing fixture fails. */
  const assertRunnable = (verb: Verb) => {
    if (!detection.available) {
      throw new Error(`${factory.id} declares '${verb}' but detect() says it is unavailable: ${detection.reason ?? 'no reason'}. Pass options.detection (detected before registering tests) to have the kit skip with that reason.`);
    }
    if (!fixtures.model) throw new Error(`conformance: the ${verb} suite needs fixtures.model (or exclude the suite with a reason)`);
  };

  /** A test of `verb`, or its skip with the reason; `needs` are other verbs the check relies on. */
  const verbIt = (verb: Verb, title: string, fn: () => Promise<void>, needs: Verb[] = [], timeout = 120000) => {
    const reason = [verb, ...needs].map(skipReason).find(Boolean);
    if (reason) {
      it.skip(`${title} — skipped: ${reason}`, () => undefined);
      return;
    }
    it(
      title,
      async () => {
        // A check that reaches no expect() fails instead of passing on nothing.
        expect.hasAssertions();
        assertRunnable(verb);
        await fn();
      },
      timeout,
    );
  };

  const fixture = () => modelRef(fixtures.model!);
  const dataset = async (model: ModelRef) => openDataset(fixtures.dataset ?? 'random', { inputs: await backend.modelInputs(model, ctx) });

  // Results shared by several checks are made once, whichever test asks first (tests may be filtered or reordered).
  let calibration: Promise<{ table: CalibrationTable; events: number[] }> | undefined;
  const calibrated = () =>
    (calibration ??= (async () => {
      const model = fixture();
      const events: number[] = [];
      const method = backend.capabilities.calibrationMethods[0];
      const table = await backend.calibrate(model, await dataset(model), { method, samples, target: targetOf(backend) }, createRunContext({ progress: (e) => e.phase === 'calibrate' && events.push(e.current) }));
      return { table, events };
    })());
  const quantizeOptions = (output: string): QuantizeOptions => {
    const opts = quantizeOptionsFor(targetOf(backend), { output });
    const modes = backend.capabilities.modes;
    // Static needs a calibration table; without calibrate, the first mode that does not.
    if (!modes.includes(opts.mode) || (opts.mode === 'static' && !declared.has('calibrate'))) opts.mode = modes.find((m) => m !== 'static') ?? modes[0];
    if (!backend.capabilities.quantFormats.includes(opts.format) && backend.capabilities.quantFormats.length) opts.format = backend.capabilities.quantFormats[0];
    return opts;
  };
  let quantization: Promise<QuantizeResult> | undefined;
  const quantized = () =>
    (quantization ??= (async () => {
      const model = fixture();
      const opts = quantizeOptions(join(work, `quantized${model.path.endsWith('.onnx') ? '.onnx' : '.out'}`));
      const table = opts.mode === 'static' ? (await calibrated()).table : undefined;
      return backend.quantize(model, table, opts, ctx);
    })());

  describe(`qforge backend conformance: ${factory.id}`, () => {
    beforeAll(async () => {
      detection = await backend.detect();
    }, options.detectTimeoutMs ?? 20000);

    suite('contract', () => {
      it('has an id matching its factory, a package name and a version', () => {
        expect(backend.id).toBe(factory.id);
        expect(backend.id).toMatch(/^[a-z0-9][a-z0-9-]*$/);
        expect(typeof backend.packageName).toBe('string');
        expect(backend.version).toMatch(/^\d+\.\d+\.\d+/);
      });
      it('declares well-formed capabilities', () => {
        const c = backend.capabilities;
        for (const key of ['inputFormats', 'outputFormats', 'verbs', 'modes', 'quantFormats', 'calibrationMethods', 'weightTypes', 'activationTypes', 'granularity', 'targets', 'notes'] as const) {
          expect(Array.isArray(c[key])).toBe(true);
        }
        for (const v of c.verbs) expect(VERBS).toContain(v);
        if (c.verbs.includes('quantize')) expect(c.outputFormats.length).toBeGreaterThan(0);
        if (c.verbs.includes('quantize')) expect(c.modes.length).toBeGreaterThan(0);
        if (c.verbs.includes('calibrate')) expect(c.calibrationMethods.length).toBeGreaterThan(0);
        if (c.verbs.length) expect(c.inputFormats.length).toBeGreaterThan(0);
      });
    });

    suite('detect', () => {
      it('never throws, says whether it is available, and explains when it is not', async () => {
        const d = await backend.detect();
        expect(typeof d.available).toBe('boolean');
        if (!d.available) {
          expect(d.reason).toEqual(expect.any(String));
          expect(d.hint).toEqual(expect.any(String));
        }
      });
      it('is cached: a second call gives the same answer without probing again', async () => {
        const first = await backend.detect();
        const t0 = Date.now();
        const second = await backend.detect();
        expect(second).toEqual(first);
        // A loose bound: a cached answer takes microseconds, a fresh SDK probe (a Python process) far longer.
        expect(Date.now() - t0).toBeLessThan(1000);
      });
      if (given) {
        it(`agrees with the detection the tests were registered with (${given.available ? 'available' : 'unavailable'})`, async () => {
          expect((await backend.detect()).available).toBe(given.available);
        });
      }
    });

    suite('undeclared-verbs', () => {
      for (const verb of VERBS) {
        const title = `${verb}: fails with a coded error when not declared or not available`;
        if (declared.has(verb) && !unavailable) {
          it.skip(`${title} — skipped: ${verb} is declared; the ${verb} suite checks it`, () => undefined);
          continue;
        }
        it(title, async () => {
          const model = { path: join(work, 'none.onnx'), format: 'onnx' as const };
          const ds = { description: { kind: 'random' as const, source: 'random', synthetic: true, labeled: false }, samples: async function* () {} };
          const call: Record<Verb, () => Promise<unknown>> = {
            inspect: () => backend.inspect(model, ctx),
            calibrate: () => backend.calibrate(model, ds, { method: 'minmax', samples: 1, target: targetOf(backend) }, ctx),
            quantize: () => backend.quantize(model, undefined, quantizeOptionsFor(targetOf(backend), { output: join(work, `${verb}.out`) }), ctx),
            benchmark: () => backend.benchmark(model, { threads: 1, warmup: 0, runs: 1 }, ctx),
            verify: () => backend.verify(model, model, ds, { samples: 1, thresholds: {} }, ctx),
          };
          await rejectsWith(call[verb](), ['E_UNSUPPORTED', 'E_SDK_MISSING', 'E_BACKEND_UNAVAILABLE']);
        });
      }
    });

    suite('inspect', () => {
      verbIt('inspect', 'describes the fixture model', async () => {
        const info = await backend.inspect(fixture(), ctx);
        expect(info.inputs.length).toBeGreaterThan(0);
        expect(info.sizeBytes).toBeGreaterThan(0);
        expect(info.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(await backend.modelInputs(fixture(), ctx)).toEqual(info.inputs);
      });
    });

    suite('calibrate', () => {
      verbIt('calibrate', 'produces a valid, serializable calibration table tied to the model', async () => {
        const { table, events } = await calibrated();
        expect(validateCalibrationTable(JSON.parse(JSON.stringify(table)))).toBeTruthy();
        expect(table.sampleCount).toBeGreaterThan(0);
        expect(table.sampleCount).toBeLessThanOrEqual(samples);
        expect(Object.keys(table.tensors).length).toBeGreaterThan(0);
        for (const t of Object.values(table.tensors)) expect(t.range[0]).toBeLessThanOrEqual(t.range[1]);
        expect(events.length).toBeGreaterThan(0);
      });
      verbIt('calibrate', 'stops with E_ABORTED when cancelled', async () => {
        const model = fixture();
        await rejectsWith(backend.calibrate(model, await dataset(model), { method: backend.capabilities.calibrationMethods[0], samples, target: targetOf(backend) }, aborted()), ['E_ABORTED']);
      });
    });

    suite('quantize', () => {
      verbIt('quantize', 'writes a smaller model and records every decision', async () => {
        const r = await quantized();
        expect(existsSync(r.model.path)).toBe(true);
        expect(r.sizeBytes).toBe(statSync(r.model.path).size);
        expect(r.sizeBytes).toBeLessThan(modelSizeBytes(fixture()));
        expect(r.decisions.some((d) => d.quantized)).toBe(true);
      });
      verbIt(
        'quantize',
        "writes a model that the backend's own verify passes",
        async () => {
          const r = await quantized();
          const model = fixture();
          const thresholds = fixtures.quantizedThresholds ?? { minSnrDb: 20 };
          const v = await backend.verify(model, r.model, await dataset(model), { samples, thresholds }, ctx);
          expect(v.failures).toEqual([]);
          expect(v.passed).toBe(true);
          // A quantized model is not the float model: a verify that saw no difference did not look.
          expect(Math.min(...v.outputs.map((o) => o.snrDb))).toBeLessThan(200);
        },
        ['verify'],
      );
      verbIt('quantize', 'refuses a corrupt model with E_MODEL_CORRUPT and writes nothing', async () => {
        const format = fixture().format;
        const bad = join(work, format === 'onnx' ? 'corrupt.onnx' : 'corrupt.tflite');
        writeFileSync(bad, Buffer.from('this is not a model at all, just text'));
        const out = join(work, 'never.out');
        const opts = quantizeOptions(out);
        await rejectsWith(backend.quantize({ path: bad, format }, opts.mode === 'static' ? (await calibrated()).table : undefined, opts, ctx), ['E_MODEL_CORRUPT']);
        expect(existsSync(out)).toBe(false);
      });
      verbIt('quantize', 'stops with E_ABORTED when cancelled and writes nothing', async () => {
        const out = join(work, 'aborted.out');
        const opts = quantizeOptions(out);
        await rejectsWith(backend.quantize(fixture(), opts.mode === 'static' ? (await calibrated()).table : undefined, opts, aborted()), ['E_ABORTED']);
        expect(existsSync(out)).toBe(false);
      });
    });

    suite('benchmark', () => {
      verbIt('benchmark', 'reports consistent latency statistics', async () => {
        const r = await backend.benchmark(fixture(), { threads: 1, warmup: 1, runs: 5 }, ctx);
        const l = r.primary.latencyMs;
        expect(l.count).toBe(5);
        expect(l.samples).toHaveLength(5);
        expect(l.min).toBeLessThanOrEqual(l.p50);
        expect(l.p50).toBeLessThanOrEqual(l.p99);
        expect(l.p99).toBeLessThanOrEqual(l.max);
        expect(r.primary.throughputPerSec).toBeGreaterThan(0);
      });
      verbIt('benchmark', 'compares two models run by run, with the ratio of medians and its interval', async () => {
        const r = await backend.benchmark(fixture(), { threads: 1, warmup: 1, runs: 9, compare: fixture() }, ctx);
        expect(r.compare).toBeDefined();
        expect(r.compare!.latencyMs.count).toBe(r.primary.latencyMs.count);
        const s = r.speedupEstimate!;
        expect(s).toBeDefined();
        // The ratio is computed from the latencies reported, not invented.
        expect(s.median).toBeCloseTo(median(r.compare!.latencyMs.samples) / median(r.primary.latencyMs.samples), 9);
        expect(r.speedup).toBe(s.median);
        expect(s.pairs).toBe(r.primary.latencyMs.count);
        expect(s.low).toBeLessThanOrEqual(s.median);
        expect(s.median).toBeLessThanOrEqual(s.high);
      });
      verbIt('benchmark', 'stops with E_ABORTED when cancelled', async () => {
        await rejectsWith(backend.benchmark(fixture(), { threads: 1, warmup: 0, runs: 3 }, aborted()), ['E_ABORTED']);
      });
    });

    suite('verify', () => {
      verbIt('verify', 'finds a model identical to itself and passes', async () => {
        const model = fixture();
        const r = await backend.verify(model, model, await dataset(model), { samples: Math.min(samples, 4), thresholds: { minSnrDb: 60 } }, ctx);
        expect(r.passed).toBe(true);
        expect(r.failures).toEqual([]);
        for (const o of r.outputs) expect(o.snrDb).toBeGreaterThanOrEqual(60);
      });
      if (fixtures.perturb || !declared.has('quantize')) {
        verbIt('verify', 'fails a deliberately perturbed model', async () => {
          if (!fixtures.perturb) throw new Error(`conformance: nothing shows that ${factory.id}'s verify can fail — give fixtures.perturb (a model that computes something else), or declare quantize`);
          const model = fixture();
          const perturbed = await fixtures.perturb(model, mkdtempSync(join(work, 'perturbed-')));
          const r = await backend.verify(model, perturbed, await dataset(model), { samples: Math.min(samples, 4), thresholds: { minSnrDb: 20 } }, ctx);
          expect(r.passed).toBe(false);
          expect(r.failures.length).toBeGreaterThan(0);
          expect(Math.min(...r.outputs.map((o) => o.snrDb))).toBeLessThan(20);
        });
      } else {
        it.skip('fails a deliberately perturbed model — skipped: no fixtures.perturb given; "judges by its thresholds" shows verify can fail', () => undefined);
      }
      verbIt(
        'verify',
        'judges by its thresholds: the quantized model fails a threshold above what verify measured',
        async () => {
          const model = fixture();
          const q = await quantized();
          const ds = await dataset(model);
          const loose = await backend.verify(model, q.model, ds, { samples: Math.min(samples, 4), thresholds: {} }, ctx);
          expect(loose.passed).toBe(true);
          const measured = Math.min(...loose.outputs.map((o) => o.snrDb));
          const strict = await backend.verify(model, q.model, await dataset(model), { samples: Math.min(samples, 4), thresholds: { minSnrDb: measured + 10 } }, ctx);
          expect(strict.passed).toBe(false);
          expect(strict.failures.length).toBeGreaterThan(0);
        },
        ['quantize'],
      );
      verbIt('verify', 'stops with E_ABORTED when cancelled', async () => {
        const model = fixture();
        await rejectsWith(backend.verify(model, model, await dataset(model), { samples: 2, thresholds: {} }, aborted()), ['E_ABORTED']);
      });
    });

    suite('errors', () => {
      const verb = (['inspect', 'benchmark'] as const).find((v) => declared.has(v));
      const title = 'refuses a missing model with E_MODEL_NOT_FOUND or a coded runtime/unsupported error';
      if (!verb) {
        it.skip(`${title} — skipped: neither inspect nor benchmark is declared (undeclared-verbs covers the rest)`, () => undefined);
        return;
      }
      verbIt(verb, title, async () => {
        const missing = { path: join(work, 'missing.onnx'), format: backend.capabilities.inputFormats[0] };
        const p = verb === 'inspect' ? backend.inspect(missing, ctx) : backend.benchmark(missing, { threads: 1, warmup: 0, runs: 1 }, ctx);
        await rejectsWith(p, ['E_MODEL_NOT_FOUND', 'E_RUNTIME_FAILED', 'E_MODEL_CORRUPT', 'E_UNSUPPORTED']);
      });
    });
  });
}
