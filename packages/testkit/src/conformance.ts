// The backend conformance suite, written once and run by every backend from its own Jest tests.
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ErrorCodes,
  createRunContext,
  isQforgeError,
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
  type QuantizeOptions,
  type Verb,
} from '@qforge/core';

export interface ConformanceFixtures {
  /** A model the backend reads (path). Needed for every verb suite. */
  model?: string;
  /** A dataset spec the model accepts (e.g. `mnist:calib`, `random`, a folder). */
  dataset?: string;
  /** Samples per calibrate/verify call; keep small. @defaultValue 8 */
  samples?: number;
}

export interface ConformanceOptions {
  factory: BackendFactory;
  fixtures?: ConformanceFixtures;
  /** Suites the backend cannot pass, each with the reason (they are reported as skipped, never silently). */
  exclude?: Partial<Record<ConformanceSuite, string>>;
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

function quantizeOptions(backend: Backend, output: string): QuantizeOptions {
  return quantizeOptionsFor(targetOf(backend), { output });
}

/** The target a user's `--target auto` gets with this backend. */
function targetOf(backend: Backend) {
  return resolveTargetProfile('auto', undefined, backend.capabilities.targets);
}

/**
 * Registers Jest suites that check a backend against the qforge contract. Suites are chosen
 * from the backend's declared capabilities and its detection; what cannot run here is reported
 * with `it.skip` and the reason.
 */
export function runBackendConformance(options: ConformanceOptions): void {
  const { factory, fixtures = {}, exclude = {} } = options;
  const samples = fixtures.samples ?? 8;
  let backend: Backend;
  let detection: Detection;
  const ctx = createRunContext();
  const work = mkdtempSync(join(tmpdir(), `qforge-conformance-${factory.id}-`));

  const suite = (name: ConformanceSuite, body: () => void) => {
    if (exclude[name]) {
      describe(`${name} (excluded: ${exclude[name]})`, () => it.skip(exclude[name]!, () => undefined));
      return;
    }
    describe(name, body);
  };
  const verbIt = (verb: Verb, title: string, fn: () => Promise<void>, timeout = 120000) => {
    it(title, async () => {
      if (!backend.capabilities.verbs.includes(verb)) return; // declared unsupported: covered by 'undeclared-verbs'
      if (!detection.available) return; // cannot run here: covered by 'detect'
      if (!fixtures.model) throw new Error(`conformance: the ${verb} suite needs fixtures.model (or exclude it with a reason)`);
      await fn();
    }, timeout);
  };

  describe(`qforge backend conformance: ${factory.id}`, () => {
    beforeAll(async () => {
      backend = factory.create();
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
      it('is cached: a second call is immediate', async () => {
        const t0 = Date.now();
        await backend.detect();
        expect(Date.now() - t0).toBeLessThan(50);
      });
    });

    suite('undeclared-verbs', () => {
      for (const verb of VERBS) {
        it(`${verb}: fails with a coded error when not declared or not available`, async () => {
          if (backend.capabilities.verbs.includes(verb) && detection.available) return;
          const model = { path: join(work, 'none.onnx'), format: 'onnx' as const };
          const ds = { description: { kind: 'random' as const, source: 'random', synthetic: true, labeled: false }, samples: async function* () {} };
          const call: Record<Verb, () => Promise<unknown>> = {
            inspect: () => backend.inspect(model, ctx),
            calibrate: () => backend.calibrate(model, ds, { method: 'minmax', samples: 1, target: targetOf(backend) }, ctx),
            quantize: () => backend.quantize(model, undefined, quantizeOptions(backend, join(work, `${verb}.out`)), ctx),
            benchmark: () => backend.benchmark(model, { threads: 1, warmup: 0, runs: 1 }, ctx),
            verify: () => backend.verify(model, model, ds, { samples: 1, thresholds: {} }, ctx),
          };
          await rejectsWith(call[verb](), ['E_UNSUPPORTED', 'E_SDK_MISSING', 'E_BACKEND_UNAVAILABLE']);
        });
      }
    });

    suite('inspect', () => {
      verbIt('inspect', 'describes the fixture model', async () => {
        const info = await backend.inspect(modelRef(fixtures.model!), ctx);
        expect(info.inputs.length).toBeGreaterThan(0);
        expect(info.sizeBytes).toBeGreaterThan(0);
        expect(info.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(await backend.modelInputs(modelRef(fixtures.model!), ctx)).toEqual(info.inputs);
      });
    });

    let table: CalibrationTable | undefined;
    suite('calibrate', () => {
      verbIt('calibrate', 'produces a valid, serializable calibration table tied to the model', async () => {
        const model = modelRef(fixtures.model!);
        const ds = openDataset(fixtures.dataset ?? 'random', { inputs: await backend.modelInputs(model, ctx) });
        const events: number[] = [];
        const method = backend.capabilities.calibrationMethods[0];
        table = await backend.calibrate(model, ds, { method, samples, target: targetOf(backend) }, createRunContext({ progress: (e) => e.phase === 'calibrate' && events.push(e.current) }));
        expect(validateCalibrationTable(JSON.parse(JSON.stringify(table)))).toBeTruthy();
        expect(table.sampleCount).toBeGreaterThan(0);
        expect(table.sampleCount).toBeLessThanOrEqual(samples);
        expect(Object.keys(table.tensors).length).toBeGreaterThan(0);
        for (const t of Object.values(table.tensors)) expect(t.range[0]).toBeLessThanOrEqual(t.range[1]);
        expect(events.length).toBeGreaterThan(0);
      });
      verbIt('calibrate', 'stops with E_ABORTED when cancelled', async () => {
        const model = modelRef(fixtures.model!);
        const ds = openDataset(fixtures.dataset ?? 'random', { inputs: await backend.modelInputs(model, ctx) });
        const ac = new AbortController();
        ac.abort();
        await rejectsWith(backend.calibrate(model, ds, { method: backend.capabilities.calibrationMethods[0], samples, target: targetOf(backend) }, createRunContext({ signal: ac.signal })), ['E_ABORTED']);
      });
    });

    suite('quantize', () => {
      verbIt('quantize', 'writes a smaller model and records every decision', async () => {
        const model = modelRef(fixtures.model!);
        const out = join(work, `quantized${model.path.endsWith('.onnx') ? '.onnx' : '.out'}`);
        const opts = quantizeOptions(backend, out);
        if (!backend.capabilities.modes.includes('static')) opts.mode = backend.capabilities.modes[0];
        opts.format = backend.capabilities.quantFormats.includes(opts.format) ? opts.format : backend.capabilities.quantFormats[0];
        const r = await backend.quantize(model, opts.mode === 'static' ? table : undefined, opts, ctx);
        expect(existsSync(r.model.path)).toBe(true);
        expect(r.sizeBytes).toBe(statSync(r.model.path).size);
        expect(r.sizeBytes).toBeLessThan(modelSizeBytes(model));
        expect(r.decisions.some((d) => d.quantized)).toBe(true);
      });
      verbIt('quantize', 'refuses a corrupt model with E_MODEL_CORRUPT and writes nothing', async () => {
        const format = modelRef(fixtures.model!).format;
        const bad = join(work, format === 'onnx' ? 'corrupt.onnx' : 'corrupt.tflite');
        writeFileSync(bad, Buffer.from('this is not a model at all, just text'));
        const out = join(work, 'never.out');
        await rejectsWith(backend.quantize({ path: bad, format }, table, quantizeOptions(backend, out), ctx), ['E_MODEL_CORRUPT']);
        expect(existsSync(out)).toBe(false);
      });
    });

    suite('benchmark', () => {
      verbIt('benchmark', 'reports consistent latency statistics', async () => {
        const r = await backend.benchmark(modelRef(fixtures.model!), { threads: 1, warmup: 1, runs: 5 }, ctx);
        const l = r.primary.latencyMs;
        expect(l.count).toBe(5);
        expect(l.min).toBeLessThanOrEqual(l.p50);
        expect(l.p50).toBeLessThanOrEqual(l.p99);
        expect(l.p99).toBeLessThanOrEqual(l.max);
        expect(r.primary.throughputPerSec).toBeGreaterThan(0);
      });
    });

    suite('verify', () => {
      verbIt('verify', 'finds a model identical to itself and passes', async () => {
        const model = modelRef(fixtures.model!);
        const ds = openDataset(fixtures.dataset ?? 'random', { inputs: await backend.modelInputs(model, ctx) });
        const r = await backend.verify(model, model, ds, { samples: Math.min(samples, 4), thresholds: { minSnrDb: 60 } }, ctx);
        expect(r.passed).toBe(true);
        for (const o of r.outputs) expect(o.snrDb).toBeGreaterThanOrEqual(60);
      });
    });

    suite('errors', () => {
      it('refuses a missing model with E_MODEL_NOT_FOUND or a coded unsupported/SDK error', async () => {
        const verb = backend.capabilities.verbs[0];
        if (!verb || !detection.available) return;
        const p = verb === 'inspect' ? backend.inspect({ path: join(work, 'missing.onnx'), format: backend.capabilities.inputFormats[0] }, ctx) : backend.benchmark({ path: join(work, 'missing.onnx'), format: backend.capabilities.inputFormats[0] }, { threads: 1, warmup: 0, runs: 1 }, ctx);
        await rejectsWith(p, ['E_MODEL_NOT_FOUND', 'E_RUNTIME_FAILED', 'E_MODEL_CORRUPT', 'E_UNSUPPORTED']);
      });
    });
  });
}
