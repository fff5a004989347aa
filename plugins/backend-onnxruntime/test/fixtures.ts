// Small ONNX graphs shaped like real exports (Constant weights, old opsets, BatchNorm, ReLU6 as Clip).
import { DataType, intAttr, intsAttr, makeNode, makeTensor, makeValueInfo, tensorAttr, type ModelProto } from '@qforge/onnx';
import { mulberry32 } from '@qforge/core';

function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())) * scale;
  return out;
}

const constant = (name: string, dims: number[], data: Float32Array) => makeNode('Constant', [], [name], `${name}_const`, [tensorAttr('value', makeTensor(name, dims, data))]);

/** Conv(Constant W) → BatchNorm → Clip(0,6) → Conv 1×1 → Relu → GlobalAveragePool → Flatten → Gemm → Softmax, opset 11. */
export function messyCnn(opts: { softmaxAxis?: number; flattenBeforeSoftmax?: boolean } = {}): ModelProto {
  const c1 = 8;
  const nodes = [
    constant('w1', [c1, 3, 3, 3], randn(c1 * 27, 1, 0.3)),
    makeNode('Conv', ['x', 'w1'], ['conv1'], 'conv1', [intsAttr('kernel_shape', [3, 3]), intsAttr('pads', [1, 1, 1, 1])]),
    constant('bn_scale', [c1], randn(c1, 2, 0.2).map((v) => 1 + v)),
    constant('bn_bias', [c1], randn(c1, 3, 0.1)),
    constant('bn_mean', [c1], randn(c1, 4, 0.1)),
    constant('bn_var', [c1], randn(c1, 5, 0.1).map((v) => 1 + Math.abs(v))),
    makeNode('BatchNormalization', ['conv1', 'bn_scale', 'bn_bias', 'bn_mean', 'bn_var'], ['bn1'], 'bn1'),
    constant('clip_min', [], Float32Array.from([0])),
    constant('clip_max', [], Float32Array.from([6])),
    makeNode('Clip', ['bn1', 'clip_min', 'clip_max'], ['relu6'], 'relu6'),
    makeNode('Conv', ['relu6', 'w2', 'b2'], ['conv2'], 'conv2', [intsAttr('kernel_shape', [1, 1])]),
    makeNode('Relu', ['conv2'], ['relu2'], 'relu2'),
    makeNode('GlobalAveragePool', ['relu2'], ['gap'], 'gap'),
    makeNode('Flatten', ['gap'], ['flat'], 'flatten', [intAttr('axis', 1)]),
    makeNode('Gemm', ['flat', 'w3', 'b3'], ['logits'], 'fc', [intAttr('transB', 1)]),
  ];
  if (opts.flattenBeforeSoftmax === false) {
    nodes.push(makeNode('Unsqueeze', ['logits'], ['logits4'], 'unsq', [intsAttr('axes', [2, 3])]));
    nodes.push(makeNode('Softmax', ['logits4'], ['probs4'], 'softmax', [intAttr('axis', opts.softmaxAxis ?? 1)]));
    nodes.push(makeNode('Flatten', ['probs4'], ['probs'], 'flatten_out', [intAttr('axis', 1)]));
  } else nodes.push(makeNode('Softmax', ['logits'], ['probs'], 'softmax', [intAttr('axis', opts.softmaxAxis ?? 1)]));
  return {
    irVersion: 6,
    opsetImport: [{ domain: '', version: 11 }],
    producerName: 'fixture',
    graph: {
      name: 'messy',
      node: nodes,
      initializer: [makeTensor('w2', [16, c1, 1, 1], randn(16 * c1, 6, 0.4)), makeTensor('b2', [16], randn(16, 7, 0.1)), makeTensor('w3', [5, 16], randn(80, 8, 0.5)), makeTensor('b3', [5], randn(5, 9, 0.1))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 3, 16, 16])],
      output: [makeValueInfo('probs', DataType.FLOAT, [1, 5])],
      valueInfo: [],
    },
  };
}

/** A transformer-style block: MatMul → Add → Relu → MatMul (weights as initializers). */
export function mlp(dIn = 64, dHidden = 256, tokens = 16): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'mlp',
      node: [
        makeNode('MatMul', ['x', 'w1'], ['h'], 'fc1'),
        makeNode('Add', ['h', 'b1'], ['hb'], 'fc1_bias'),
        makeNode('Relu', ['hb'], ['a'], 'act'),
        makeNode('MatMul', ['a', 'w2'], ['y'], 'fc2'),
      ],
      initializer: [makeTensor('w1', [dIn, dHidden], randn(dIn * dHidden, 11, 0.1)), makeTensor('b1', [dHidden], randn(dHidden, 12, 0.1)), makeTensor('w2', [dHidden, dIn], randn(dHidden * dIn, 13, 0.1))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, tokens, dIn])],
      output: [makeValueInfo('y', DataType.FLOAT, [1, tokens, dIn])],
      valueInfo: [],
    },
  };
}

/**
 * A CRNN-style head: bidirectional LSTM over a sequence → Transpose/Reshape → MatMul to class
 * scores per time step (the shape of OCR recognizers such as ddddocr). Gate weights are scaled
 * so the cell neither saturates nor dies on unit-variance inputs.
 */
export function lstmHead(opts: { steps?: number; inputSize?: number; hidden?: number; classes?: number } = {}): ModelProto {
  const { steps = 12, inputSize = 32, hidden = 48, classes = 20 } = opts;
  const lstmAttrs = [intAttr('hidden_size', hidden), { name: 'direction', type: 3, s: new TextEncoder().encode('bidirectional') }];
  return {
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'lstm-head',
      node: [
        makeNode('LSTM', ['x', 'W', 'R', 'B'], ['y'], 'lstm', lstmAttrs),
        // y: [T, 2, 1, H] → [T, 1, 2, H] → [T, 2H]
        makeNode('Transpose', ['y'], ['yt'], 'transpose', [intsAttr('perm', [0, 2, 1, 3])]),
        makeNode('Reshape', ['yt', 'shape'], ['yr'], 'reshape'),
        makeNode('MatMul', ['yr', 'Wc'], ['scores'], 'classifier'),
      ],
      initializer: [
        makeTensor('W', [2, 4 * hidden, inputSize], randn(2 * 4 * hidden * inputSize, 21, 1 / Math.sqrt(inputSize))),
        makeTensor('R', [2, 4 * hidden, hidden], randn(2 * 4 * hidden * hidden, 22, 1 / Math.sqrt(hidden))),
        makeTensor('B', [2, 8 * hidden], randn(2 * 8 * hidden, 23, 0.1)),
        makeTensor('shape', [2], BigInt64Array.from([BigInt(steps), BigInt(2 * hidden)])),
        makeTensor('Wc', [2 * hidden, classes], randn(2 * hidden * classes, 24, 1 / Math.sqrt(2 * hidden))),
      ],
      input: [makeValueInfo('x', DataType.FLOAT, [steps, 1, inputSize])],
      output: [makeValueInfo('scores', DataType.FLOAT, [steps, classes])],
      valueInfo: [],
    },
  };
}
