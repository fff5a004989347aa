import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs/minimal';
import { DataType, decodeTensorProto, encodeTensorProto, type GraphProto, type ModelProto } from './proto';
import {
  GraphIndex,
  attr,
  attrInt,
  attrInt64s,
  attrInts,
  intAttr,
  intsAttr,
  makeNode,
  makeTensor,
  makeValueInfo,
  subgraphOuterReferences,
  tensorToInt64s,
  tensorToInts,
  topologicalSort,
  uniqueNamer,
} from './graph';
import { decodeModel, encodeModel, loadModel } from './model';

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;
/** INT64_MAX as a varint: eight 0xff then 0x7f. */
const INT64_MAX_VARINT = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);

function sliceModel(): ModelProto {
  return {
    irVersion: 4,
    opsetImport: [{ domain: '', version: 9 }],
    graph: {
      name: 'g',
      node: [makeNode('Slice', ['x'], ['y'], 'slice', [intsAttr('starts', [1]), intsAttr('ends', [INT64_MAX]), intsAttr('axes', [1]), intAttr('big', INT64_MIN)])],
      initializer: [{ name: 'c', dims: [3], dataType: DataType.INT64, int64Data: [INT64_MAX, -1, INT64_MIN] }],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 4])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 3])],
      valueInfo: [],
    },
  };
}

describe('exact int64 I/O', () => {
  it('keeps INT64_MAX / INT64_MIN in attributes and int64_data through decode → encode', () => {
    const bytes = encodeModel(sliceModel());
    expect(Buffer.from(bytes).includes(INT64_MAX_VARINT)).toBe(true);
    const m = decodeModel(bytes);
    const slice = m.graph.node[0];
    expect(attr(slice, 'ends')?.ints).toEqual([INT64_MAX]);
    expect(attr(slice, 'big')?.i).toBe(INT64_MIN);
    expect(attr(slice, 'starts')?.ints).toEqual([1]); // safe values stay numbers
    expect(m.graph.initializer[0].int64Data).toEqual([INT64_MAX, -1, INT64_MIN]);
    expect(Buffer.from(encodeModel(m)).equals(Buffer.from(bytes))).toBe(true);
    // Arithmetic callers get a clamped number that keeps "to the end"; writers get the exact value.
    expect(attrInts(slice, 'ends')).toEqual([Number.MAX_SAFE_INTEGER]);
    expect(attrInt(slice, 'big', 0)).toBe(-Number.MAX_SAFE_INTEGER);
    expect(attrInt64s(slice, 'ends')).toEqual([INT64_MAX]);
    expect(tensorToInt64s(m.graph.initializer[0])).toEqual([INT64_MAX, -1, INT64_MIN]);
    expect(tensorToInts(makeTensor('r', [2], BigInt64Array.from([INT64_MAX, -2n])))).toEqual([Number.MAX_SAFE_INTEGER, -2]);
  });

  it('refuses to write an int64 that is a number beyond 2^53 (what used to become INT64_MIN)', () => {
    // The old path: INT64_MAX decoded to the number 2^63, and protobufjs writes 2^63 as INT64_MIN.
    const lossy = Number(INT64_MAX);
    const bits = protobuf.util.LongBits.fromNumber(lossy);
    expect(BigInt.asIntN(64, (BigInt(bits.hi >>> 0) << 32n) | BigInt(bits.lo >>> 0))).toBe(INT64_MIN);
    const m = sliceModel();
    m.graph.node[0].attribute[1] = intsAttr('ends', [lossy]);
    expect(() => encodeModel(m)).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT' }));
  });

  it('stays exact when protobufjs is configured without Long elsewhere in the process', () => {
    const bytes = encodeModel(sliceModel());
    const saved = protobuf.util.Long;
    try {
      protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
      protobuf.configure();
      expect(attr(decodeModel(bytes).graph.node[0], 'ends')?.ints).toEqual([INT64_MAX]);
    } finally {
      protobuf.util.Long = saved;
      protobuf.configure();
    }
  });

  it('reads and writes single TensorProtos (test-data .pb files)', () => {
    const t = makeTensor('x', [2], Float32Array.from([1.5, -2]));
    const back = decodeTensorProto(encodeTensorProto(t));
    expect(back.dims).toEqual([2]);
    expect(Buffer.from(back.rawData!).equals(Buffer.from(t.rawData!))).toBe(true);
  });

  it('refuses a model whose tensor dimension is not a safe integer', () => {
    const m = sliceModel();
    m.graph.initializer[0] = { ...m.graph.initializer[0], dims: [INT64_MAX as unknown as number] };
    expect(() => decodeModel(encodeModel(m))).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT' }));
  });

  it('reports fields the pinned schema does not know, which are not written back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-proto-'));
    const known = encodeModel(sliceModel());
    // Field 99, varint 1: tag (99 << 3) = 792 → 0x98 0x06.
    const p = join(dir, 'future.onnx');
    writeFileSync(p, Buffer.concat([Buffer.from(known), Buffer.from([0x98, 0x06, 0x01])]));
    const loaded = loadModel(p);
    expect(loaded.unknownFields).toHaveLength(1);
    expect(Buffer.from(encodeModel(loaded.proto)).equals(Buffer.from(known))).toBe(true);
    writeFileSync(p, known);
    expect(loadModel(p).unknownFields).toHaveLength(0);
    expect(readFileSync(p).length).toBe(known.length);
  });
});

/** A graph whose If branch reads the outer initializer `w` and the outer value `s`, neither listed as If inputs. */
function ifModel(): ModelProto {
  const branch = (name: string, op: string): GraphProto => ({
    name,
    node: [makeNode(op, ['s', 'w'], [`${name}_out`], `${name}_op`)],
    initializer: [],
    input: [],
    output: [makeValueInfo(`${name}_out`, DataType.FLOAT, [1, 2])],
    valueInfo: [],
  });
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'g',
      node: [
        makeNode('If', ['cond'], ['y'], 'if', [
          { name: 'then_branch', type: 5, g: branch('then', 'Add') },
          { name: 'else_branch', type: 5, g: branch('else', 'Sub') },
        ]),
        makeNode('Relu', ['x'], ['s'], 'relu'),
      ],
      initializer: [makeTensor('w', [1, 2], Float32Array.from([1, 2]))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 2]), makeValueInfo('cond', DataType.BOOL, [])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, 2])],
      valueInfo: [],
    },
  };
}

describe('graph passes see into If/Loop/Scan bodies', () => {
  it('counts a body reading an outer tensor as a consumer, and orders the node after its producer', () => {
    const m = ifModel();
    const ifNode = m.graph.node[0];
    expect([...subgraphOuterReferences(ifNode)].sort()).toEqual(['s', 'w']);
    const idx = new GraphIndex(m.graph);
    expect(idx.consumersOf('w').map((n) => n.name)).toEqual(['if']);
    expect(idx.consumersOf('s').map((n) => n.name)).toEqual(['if']);
    expect(topologicalSort(m.graph).map((n) => n.name)).toEqual(['relu', 'if']);
    // Negative twin: names only defined inside a body are not outer references.
    expect(idx.consumersOf('then_out')).toEqual([]);
    expect(subgraphOuterReferences(m.graph.node[1]).size).toBe(0);
  });

  it('does not hand out a name a body already uses', () => {
    const name = uniqueNamer(ifModel().graph);
    expect(name('then_out')).toBe('then_out_1');
    expect(name('fresh')).toBe('fresh');
  });

  it('round-trips a model with bodies unchanged', () => {
    const bytes = encodeModel(ifModel());
    expect(Buffer.from(encodeModel(decodeModel(bytes))).equals(Buffer.from(bytes))).toBe(true);
    expect(decodeModel(bytes).graph.node[0].attribute[0].g?.node[0].input).toEqual(['s', 'w']);
  });
});
