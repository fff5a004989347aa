import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CalibrationTable } from './calibration-table';
import type { Backend, ModelRef, OpFamily, QuantizeOptions, VerifyResult } from './contract';
import { createRunContext } from './context';
import { chooseForLatency, type LatencyTimer } from './latency-search';

const FAMILIES: OpFamily[] = [
  { family: 'convolution', opTypes: ['Conv'], byDefault: true },
  { family: 'element-wise', opTypes: ['Add', 'Mul'], byDefault: false },
  { family: 'pooling', opTypes: ['GlobalAveragePool'], byDefault: false },
  { family: 'concat', opTypes: ['Concat'], byDefault: false },
];
const FP32 = 'fp32';

/**
 * A model file holds its recipe as a key (`Add,Conv,…` or `storage`, `~N` when N nodes are kept in
 * float); verification and latency are read off tables.
 */
function keyOf(o: QuantizeOptions): string {
  if (o.storageOnly) return 'storage';
  const n = o.excludeNodes?.length ?? 0;
  return (o.opTypes.length ? [...o.opTypes].sort().join(',') : 'default') + (n ? `~${n}` : '');
}

interface Scenario {
  /** Median latency (ms) per recipe key, and of fp32. */
  latencyMs: Record<string, number>;
  /** Recipes that fail verification. */
  failing?: string[];
  opTypes?: string[];
  budgetMs?: number;
  /** Fake time that passes per quantization, ms. */
  quantizeMs?: number;
  /** Other calibration methods offered to the search; a model quantized with one has `@method` in its key. */
  alternatives?: string[];
  /** Alternatives whose table cannot be computed. */
  brokenTables?: string[];
  /** Nodes the fake quantizes (by op type and exclusions) and verification sizes (`elements`, absent: no per-layer entry). */
  nodes?: { node: string; opType: string; elements?: number }[];
  /** Map IoU of a failing recipe (the limit is 0.93; a passing one reads 0.95, a failing one 0.9 unless set here). */
  iou?: Record<string, number>;
  /** The user's `--exclude-nodes`. */
  excludeNodes?: string[];
}

async function search(s: Scenario) {
  const dir = mkdtempSync(join(tmpdir(), 'qforge-latency-'));
  let now = 0;
  const quantizedBy = new Map<string, { node: string; opType: string; quantized: boolean }[]>();
  const read = (m: ModelRef) => (m.path === 'm.onnx' ? FP32 : readFileSync(m.path, 'utf8'));
  const backend = {
    id: 'fake',
    capabilities: { opFamilies: FAMILIES, storageOnly: true },
    quantize: async (_m: unknown, t: CalibrationTable | undefined, o: QuantizeOptions) => {
      now += s.quantizeMs ?? 0;
      writeFileSync(o.output, keyOf(o) + (t && t.method !== 'minmax' ? `@${t.method}` : ''));
      const types = o.opTypes.length ? o.opTypes : ['Conv'];
      const decisions = (s.nodes ?? []).map((n) => {
        const excluded = (o.excludeNodes ?? []).includes(n.node);
        return { node: n.node, opType: n.opType, quantized: types.includes(n.opType) && !excluded, ...(excluded ? { reason: 'excluded by the user (--exclude-nodes)' } : {}) };
      });
      quantizedBy.set(o.output, decisions);
      return { model: { path: o.output, format: 'onnx' }, sizeBytes: 1, preparation: [], decisions };
    },
    verify: async (_r: unknown, c: ModelRef): Promise<VerifyResult> => {
      const passed = !(s.failing ?? []).includes(read(c));
      const quantizedNodes = new Set((quantizedBy.get(c.path) ?? []).filter((d) => d.quantized).map((d) => d.node));
      const layers = (s.nodes ?? []).filter((n) => n.elements && quantizedNodes.has(n.node)).map((n) => ({ tensor: `${n.node}_out`, node: n.node, snrDb: 20, cosine: 0.99, maxAbsError: 1, elements: n.elements }));
      const iou = passed ? 0.95 : (s.iou?.[read(c)] ?? 0.9);
      const output = { output: 'map', snrDb: 12, cosine: 0.97, maxAbsError: 1, meanAbsError: 0.01, task: { kind: 'map' as const, detectedFrom: 'Sigmoid', iou, threshold: 0.5, pixelAgreement: 0.99 } };
      return { samples: 4, labeled: false, outputs: [output], thresholds: { minIou: 0.93 }, passed, failures: passed ? [] : [`map: map IoU ${iou} < 0.93`], ...(layers.length ? { layers } : {}) };
    },
  } as unknown as Backend;
  // Deterministic fake timing: the interval is ±1% around the ratio of the table's medians.
  const timer: LatencyTimer = async (a, b) => {
    const [pa, pb] = [s.latencyMs[read(a)], s.latencyMs[read(b)]];
    const r = pb / pa;
    return { speedup: { median: r, low: r * 0.99, high: r * 1.01, confidence: 0.95, method: 'paired-bootstrap-median-ratio', pairs: 50, resamples: 2000, seed: 12 }, primaryMs: pa, compareMs: pb };
  };
  const options = { output: join(dir, 'model.int8.onnx'), opTypes: s.opTypes ?? [], excludeNodes: s.excludeNodes ?? [], mode: 'static' } as unknown as QuantizeOptions;
  const ctx = createRunContext();
  const table = { method: 'minmax', tensors: {} } as unknown as CalibrationTable;
  const computed: string[] = [];
  const alternatives = (s.alternatives ?? []).map((method) => ({
    method,
    table: async () => {
      computed.push(method);
      if ((s.brokenTables ?? []).includes(method)) throw new Error(`no histogram for ${method}`);
      return { method, tensors: {} } as unknown as CalibrationTable;
    },
  }));
  const quantized = await backend.quantize({ path: 'm.onnx', format: 'onnx' }, table, options, ctx);
  const verify = await backend.verify({ path: 'm.onnx', format: 'onnx' }, quantized.model, undefined as never, { samples: 4, thresholds: {} }, ctx);
  const result = await chooseForLatency(
    backend,
    {
      model: { path: 'm.onnx', format: 'onnx' },
      table,
      alternatives,
      options,
      quantized,
      verify,
      evaluation: { dataset: undefined as never, options: { samples: 4, thresholds: {} }, workDir: dir },
      threads: 1,
      budgetMs: s.budgetMs,
      opHistogram: { Conv: 10, Add: 4, GlobalAveragePool: 1, Relu: 3 },
      timer,
      clock: () => now,
    },
    ctx,
  );
  return { ...result, written: readFileSync(result.quantized.model.path, 'utf8'), path: result.quantized.model.path, output: options.output, computed };
}

const ALL = 'Add,Conv,GlobalAveragePool,Mul';
const ADD = 'Add,Conv,Mul';
const POOL = 'Conv,GlobalAveragePool';

describe('chooseForLatency', () => {
  it('keeps all opt-in families present in the model when that is measurably faster and passes, and writes it as the run output', async () => {
    const r = await search({ latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [ADD]: 12, [POOL]: 13 } });
    expect(r.choices.families).toEqual(['element-wise', 'pooling']);
    expect(r.options.opTypes.sort()).toEqual(ALL.split(','));
    expect(r.written).toBe(ALL);
    expect(r.path).toBe(r.output);
    // Concat does not occur in the model: never tried.
    expect(r.choices.steps.some((s) => s.families.includes('concat'))).toBe(false);
    expect(r.choices.storageOnly).toBe(false);
    expect(r.verdictNotes).toEqual([]);
  });

  it('drops a family that costs accuracy even though it is faster (negative twin)', async () => {
    const r = await search({ latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [ADD]: 11, [POOL]: 13.5 }, failing: [ALL, POOL] });
    expect(r.choices.families).toEqual(['element-wise']);
    expect(r.written).toBe(ADD);
    expect(r.choices.steps[0]).toMatchObject({ candidate: 'all opt-in families (element-wise, pooling)', passed: false, kept: false });
    // Adding pooling to element-wise is the failing set already measured: not tried again.
    expect(r.choices.steps.filter((s) => s.families.length === 2)).toHaveLength(1);
  });

  it('retries all families with another calibration method when the run\'s ranges fail, and writes that table', async () => {
    const r = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [`${ALL}@mse`]: 10, [`${ADD}@mse`]: 12, [`${POOL}@mse`]: 13 },
      failing: [ALL],
      alternatives: ['mse', 'percentile'],
    });
    expect(r.choices.steps[0]).toMatchObject({ candidate: 'all opt-in families (element-wise, pooling)', passed: false, kept: false });
    expect(r.choices.steps[1]).toMatchObject({ candidate: 'all opt-in families (element-wise, pooling), mse calibration', method: 'mse', passed: true, kept: true });
    expect(r.choices.method).toBe('mse');
    expect(r.table?.method).toBe('mse');
    // The toggles after it use the mse table too (timed as mse models), and the written model is rebuilt from it.
    expect(r.choices.steps.slice(2, -1).map((x) => [x.candidate, x.method, x.medianMs])).toEqual([
      ['−element-wise', 'mse', 13],
      ['−pooling', 'mse', 12],
    ]);
    expect(r.written).toBe(`${ALL}@mse`);
    // Tables are computed only when needed: percentile never was.
    expect(r.computed).toEqual(['mse']);
    expect(r.choices.notes).toEqual([expect.stringMatching(/^calibrated with mse: with the run's minmax ranges/)]);
  });

  it('keeps the run\'s table when every other method fails too (negative twin)', async () => {
    const r = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [`${ALL}@mse`]: 10, [`${ALL}@percentile`]: 10, [ADD]: 14.5, [POOL]: 14.5 },
      failing: [ALL, `${ALL}@mse`, `${ALL}@percentile`],
      alternatives: ['mse', 'percentile'],
    });
    expect(r.computed).toEqual(['mse', 'percentile']);
    expect(r.choices.method).toBeUndefined();
    expect(r.table?.method).toBe('minmax');
    expect(r.written).toBe('default');
  });

  it('stops retrying when a method passes but is not faster, and when a table cannot be computed', async () => {
    const slow = await search({
      latencyMs: { [FP32]: 20, default: 10, [ALL]: 10, [`${ALL}@mse`]: 10.5, [ADD]: 10, [POOL]: 10 },
      failing: [ALL],
      alternatives: ['mse', 'percentile'],
    });
    expect(slow.computed).toEqual(['mse']);
    expect(slow.written).toBe('default');
    const broken = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [ADD]: 14.5, [POOL]: 14.5 },
      failing: [ALL],
      alternatives: ['mse', 'percentile'],
      brokenTables: ['mse'],
    });
    expect(broken.computed).toEqual(['mse']);
    // The per-node step needs tensor sizes from per-layer verification, which this backend does not give.
    expect(broken.choices.notes).toEqual([expect.stringMatching(/^calibration with mse failed \(no histogram for mse\)/), 'per-node step skipped: the verification has no per-layer tensor sizes (per-layer verification off, or backend fake does not report them)']);
    expect(broken.written).toBe('default');
  });

  // Element-wise nodes from a large early tensor to a small late one; `mul2` has no per-layer entry of its own.
  const NODES = [
    { node: 'conv1', opType: 'Conv', elements: 4000 },
    { node: 'add1', opType: 'Add', elements: 4000 },
    { node: 'mul1', opType: 'Mul', elements: 2000 },
    { node: 'add2', opType: 'Add', elements: 1000 },
    { node: 'mul2', opType: 'Mul' },
    { node: 'add3', opType: 'Add', elements: 100 },
    { node: 'gap', opType: 'GlobalAveragePool', elements: 8 },
  ];

  it('keeps the opt-in nodes on the smallest tensors in float when every one in int8 fails with every table, and writes that model', async () => {
    const r = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [`${ALL}@mse`]: 10, [`${ALL}~3@mse`]: 10.2, [`${ALL}~4@mse`]: 10.4, [`${ADD}~3@mse`]: 13, [`${POOL}~1@mse`]: 13 },
      failing: [ALL, `${ALL}@mse`, `${ALL}~3@mse`],
      // mse came closer to the limit than minmax: the float nodes are tried with its table.
      iou: { [`${ALL}@mse`]: 0.92 },
      alternatives: ['mse'],
      nodes: NODES,
    });
    const float = r.choices.steps.filter((x) => /opt-in nodes in float/.test(x.candidate) && x.against !== 'fp32');
    // Of 7208 elements: gap (8), add3 (100) and mul2 (100: sized as add3, the next node with a size) are ≤ 10%; with add2, 1208 (≤ 25%).
    expect(float.map((x) => [x.floatNodes, x.passed, x.kept])).toEqual([
      [['gap', 'add3', 'mul2'], false, false],
      [['gap', 'add3', 'mul2', 'add2'], true, true],
    ]);
    expect(float[1].candidate).toBe('all opt-in families (element-wise, pooling), mse calibration, 4 of 6 opt-in nodes in float (smallest tensors, 17% of their elements)');
    expect(r.choices.floatNodes).toEqual(['gap', 'add3', 'mul2', 'add2']);
    expect(r.options.excludeNodes).toEqual(['gap', 'add3', 'mul2', 'add2']);
    expect(r.choices.method).toBe('mse');
    // The toggles after it keep the float nodes of the families still on; the written model has them all.
    expect(r.choices.steps.slice(-3, -1).map((x) => [x.candidate, x.floatNodes, x.medianMs])).toEqual([
      ['−element-wise', ['gap'], 13],
      ['−pooling', ['add3', 'mul2', 'add2'], 13],
    ]);
    expect(r.written).toBe(`${ALL}~4@mse`);
    expect(r.choices.notes).toContain('4 opt-in node(s) kept in float (smallest tensors first): with all of them in int8 verification failed');
  });

  it('keeps the user\'s --exclude-nodes beside the search\'s float nodes, and drops float nodes of a family switched off later', async () => {
    const r = await search({
      // −element-wise is kept: only gap (pooling) remains a float choice.
      // Keys count the user's add1 among the excluded nodes.
      latencyMs: { [FP32]: 20, 'default~1': 14, [`${ALL}~1`]: 10, [`${ALL}~4`]: 10, [`${POOL}~2`]: 9 },
      failing: [`${ALL}~1`],
      nodes: NODES,
      excludeNodes: ['add1'],
    });
    // add1 is the user's: not a candidate, never counted; of the rest (3208 elements) gap, add3, mul2 are ≤ 10%.
    expect(r.choices.steps.find((x) => /opt-in nodes in float/.test(x.candidate))).toMatchObject({ floatNodes: ['gap', 'add3', 'mul2'], passed: true, kept: true });
    expect(r.choices.steps.find((x) => x.candidate === '−element-wise')).toMatchObject({ floatNodes: ['gap'], kept: true });
    expect(r.choices.families).toEqual(['pooling']);
    expect(r.choices.floatNodes).toEqual(['gap']);
    expect(r.options.excludeNodes).toEqual(['add1', 'gap']);
    expect(r.written).toBe(`${POOL}~2`);
    // The backend calls them exclusions; the decisions say the search chose gap, the user add1.
    expect(r.quantized.decisions.find((d) => d.node === 'gap')!.reason).toMatch(/^kept in float by the latency search/);
    expect(r.quantized.decisions.find((d) => d.node === 'add1')!.reason).toBe('excluded by the user (--exclude-nodes)');
  });

  it('floats at least one node, and labels the share it really is', async () => {
    const r = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [`${ALL}~1`]: 11, [ADD]: 14.5, [POOL]: 14.5 },
      failing: [ALL],
      nodes: [
        { node: 'conv1', opType: 'Conv', elements: 100 },
        { node: 'add1', opType: 'Add', elements: 600 },
        { node: 'add2', opType: 'Add', elements: 400 },
      ],
    });
    // 400 of 1000 elements: more than any share below 50%, floated anyway at 10%, and 25% adds nothing new.
    expect(r.choices.steps.filter((x) => /opt-in nodes in float/.test(x.candidate) && x.against !== 'fp32').map((x) => x.candidate)).toEqual(['all opt-in families (element-wise, pooling), 1 of 2 opt-in nodes in float (smallest tensors, 40% of their elements)']);
    expect(r.choices.floatNodes).toEqual(['add2']);
  });

  it('does not keep float nodes that pass but are not faster than the default families (negative twin)', async () => {
    const r = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [`${ALL}~3`]: 14, [ADD]: 14.5, [POOL]: 14.5 },
      failing: [ALL],
      nodes: NODES,
    });
    expect(r.choices.steps.filter((x) => x.floatNodes).map((x) => [x.passed, x.kept, x.reason])).toEqual([[true, false, 'not measurably faster']]);
    expect(r.choices.floatNodes).toBeUndefined();
    expect(r.options.excludeNodes).toEqual([]);
    expect(r.written).toBe('default');
  });

  it('writes the default families when no share of float nodes passes (negative twin)', async () => {
    const r = await search({
      latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [`${ALL}~3`]: 10, [`${ALL}~4`]: 10, [`${ALL}~5`]: 11, [ADD]: 14.5, [POOL]: 14.5 },
      failing: [ALL, `${ALL}~3`, `${ALL}~4`, `${ALL}~5`],
      nodes: NODES,
    });
    // 10%, 25%, 50% of the elements; the largest node (add1) always stays in int8.
    expect(r.choices.steps.filter((x) => x.floatNodes).map((x) => x.floatNodes!.length)).toEqual([3, 4, 5]);
    expect(r.written).toBe('default');
  });

  it('writes storage-only int8 with the run\'s table when the recalibrated choice is still slower than fp32', async () => {
    const r = await search({
      latencyMs: { [FP32]: 0.6, default: 1.0, [ALL]: 0.9, [`${ALL}@mse`]: 0.9, [`${ADD}@mse`]: 0.95, [`${POOL}@mse`]: 1.0, storage: 0.6 },
      failing: [ALL],
      alternatives: ['mse'],
    });
    expect(r.choices.steps[1]).toMatchObject({ method: 'mse', kept: true });
    expect(r.written).toBe('storage');
    expect(r.choices.method).toBeUndefined();
    expect(r.table?.method).toBe('minmax');
  });

  it('keeps the default set when no family is measurably faster', async () => {
    const r = await search({ latencyMs: { [FP32]: 20, default: 10, [ALL]: 10, [ADD]: 10.02, [POOL]: 10 } });
    expect(r.choices.families).toEqual([]);
    expect(r.written).toBe('default');
    expect(r.options.opTypes).toEqual([]);
  });

  it('writes storage-only int8 when every int8 choice is measurably slower than fp32, and the verdict says so', async () => {
    const r = await search({ latencyMs: { [FP32]: 0.6, default: 1.0, [ALL]: 0.9, [ADD]: 0.95, [POOL]: 1.0, storage: 0.6 } });
    expect(r.choices.storageOnly).toBe(true);
    expect(r.options.storageOnly).toBe(true);
    expect(r.written).toBe('storage');
    expect(r.choices.vsFp32?.median).toBeCloseTo(1, 5);
    expect(r.verdictNotes).toEqual([expect.stringMatching(/^int8 kernels are slower than fp32 here .*compute in float like fp32/)]);
    expect(r.choices.steps.at(-1)).toMatchObject({ candidate: 'int8 storage only', storageOnly: true, kept: true });
  });

  it('keeps int8 that is not measurably slower than fp32: no fallback (negative twin)', async () => {
    const r = await search({ latencyMs: { [FP32]: 1.0, default: 1.0, [ALL]: 1.0, [ADD]: 1.0, [POOL]: 1.0, storage: 1.0 } });
    expect(r.choices.storageOnly).toBe(false);
    expect(r.choices.steps.some((s) => s.storageOnly)).toBe(false);
    expect(r.verdictNotes).toEqual([]);
  });

  it('keeps an explicit --op-types and only runs the fp32 check', async () => {
    const r = await search({ latencyMs: { [FP32]: 20, [ADD]: 12 }, opTypes: ['Add', 'Conv', 'Mul'] });
    expect(r.choices.steps).toHaveLength(1);
    expect(r.choices.steps[0].against).toBe('fp32');
    expect(r.written).toBe(ADD);
  });

  it('stops trying families when the time budget is used up, but still checks against fp32', async () => {
    const r = await search({ latencyMs: { [FP32]: 20, default: 14, [ALL]: 10, [ADD]: 12, [POOL]: 13 }, budgetMs: 5, quantizeMs: 10 });
    expect(r.choices.steps.map((s) => s.against)).toEqual(['default op families', 'fp32']);
    expect(r.choices.notes.some((n) => /budget/.test(n))).toBe(true);
  });
});
