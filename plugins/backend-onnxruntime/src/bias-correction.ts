// Bias correction (Nagel et al., 2019), measured in the quantized model: each quantized layer's
// bias absorbs the mean output shift that layer introduces itself — weight rounding (W̃ − W)·E[x]
// and the mean rounding error of its own input quantizer W̃·E[DQ(Q(x)) − x]. The second term is
// what inputs with large flat regions (paper, sky, padding) need: every pixel of the region rounds
// the same way, so the error is a constant offset, not noise. Both means come from one run of the
// quantized model, so each layer corrects only its local error (no double counting upstream).
import { errInvalidOption, throwIfAborted, type Dataset, type GraphChange, type RunContext, type Sample } from '@qforge/core';
import { GraphIndex, attrInt, encodeModel, tensorToFloat32, withExtraOutputs, type ModelProto, type NodeProto } from '@qforge/onnx';
import { opQuantizer } from './ops';
import { createSession, runSession } from './runtime';
interface Target {
  node: NodeProto;
  /** The layer's input before its quantizer, and after Q/DQ (undefined when not found). */
  input: string;
  inputDq?: string;
  wFloat: Float32Array;
  wDims: number[];
  wDeq: Float32Array;
  biasQ: string;
  biasScale: Float32Array;
}

function dequantize(q: Float32Array, scale: Float32Array, zp: Float32Array, dims: number[], axis: number): Float32Array {
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channels = dims[axis] ?? 1;
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const c = scale.length === 1 ? 0 : Math.floor(i / inner) % channels;
    out[i] = (q[i] - (zp[c] ?? 0)) * scale[c];
  }
  return out;
}

/** Per-output-channel W·m for a per-input-channel mean m: the node's family knows its weight layout. */
function meanShift(t: Target, eps: Float32Array, mean: Float64Array): Float64Array {
  return opQuantizer(t.node.opType)!.biasShift!(t.node, eps, t.wDims, mean);
}

export async function correctBiases(floatProto: ModelProto, quantProto: ModelProto, data: Dataset | undefined, samples: number, ctx: RunContext): Promise<GraphChange[]> {
  if (!data) throw errInvalidOption('--bias-correction', 'bias correction needs data', 'It uses the calibration data; pass --data.');
  const qIdx = new GraphIndex(quantProto.graph);
  const fIdx = new GraphIndex(floatProto.graph);
  const fNodes = new Map(floatProto.graph.node.map((n) => [n.name, n]));
  const targets: Target[] = [];
  for (const n of quantProto.graph.node) {
    if (!opQuantizer(n.opType, n.domain)?.biasShift || !n.input[2] || !n.name) continue;
    const wdq = qIdx.producer.get(n.input[1]);
    const bdq = qIdx.producer.get(n.input[2]);
    const fn = fNodes.get(n.name);
    if (wdq?.opType !== 'DequantizeLinear' || bdq?.opType !== 'DequantizeLinear' || !fn) continue;
    const wF = fIdx.initializers.get(fn.input[1]);
    const wQ = qIdx.initializers.get(wdq.input[0]);
    const bQ = qIdx.initializers.get(bdq.input[0]);
    const bS = qIdx.initializers.get(bdq.input[1]);
    const wS = qIdx.initializers.get(wdq.input[1]);
    const wZ = wdq.input[2] ? qIdx.initializers.get(wdq.input[2]) : undefined;
    if (!wF || !wQ || !bQ || !bS || !wS) continue;
    const dims = wQ.dims.map(Number);
    // x_dq = DequantizeLinear(QuantizeLinear(x)): fetch x and x_dq to measure the rounding offset.
    const xdq = qIdx.producer.get(n.input[0]);
    const xq = xdq?.opType === 'DequantizeLinear' ? qIdx.producer.get(xdq.input[0]) : undefined;
    targets.push({
      node: n,
      input: xq?.opType === 'QuantizeLinear' ? xq.input[0] : n.input[0],
      inputDq: xq?.opType === 'QuantizeLinear' ? n.input[0] : undefined,
      wFloat: tensorToFloat32(wF),
      wDims: dims,
      wDeq: dequantize(tensorToFloat32(wQ), tensorToFloat32(wS), wZ ? tensorToFloat32(wZ) : new Float32Array(1), dims, attrInt(wdq, 'axis', 1)),
      biasQ: bQ.name,
      biasScale: tensorToFloat32(bS),
    });
  }
  if (!targets.length) return [{ kind: 'bias-correction', detail: 'no quantized Conv/Gemm with a bias: nothing to correct' }];
  // Per-channel means of every corrected layer's input (x) and of its rounding (x_dq − x), from the quantized model.
  const graphInputs = new Set(quantProto.graph.input.map((i) => i.name));
  const names = [...new Set(targets.flatMap((t) => (t.inputDq ? [t.input, t.inputDq] : [t.input])))];
  const fetch = names.filter((t) => !graphInputs.has(t));
  const session = await createSession(encodeModel(withExtraOutputs(quantProto, fetch)), { optimization: 'basic' });
  const sums = new Map<string, Float64Array>();
  const counts = new Map<string, number>();
  let seen = 0;
  try {
    for await (const sample of data.samples({ limit: samples }) as AsyncIterable<Sample>) {
      throwIfAborted(ctx, 'bias correction');
      const out = await runSession(session, sample.inputs, fetch);
      for (const name of names) {
        const t = out[name] ?? undefined;
        const values = (t?.data ?? sample.inputs[name]?.data) as Float32Array | undefined;
        const dims = t ? [...t.dims].map(Number) : sample.inputs[name]?.dims;
        if (!values || !dims) continue;
        const channels = dims[1];
        const inner = dims.slice(2).reduce((a, b) => a * b, 1);
        const sum = sums.get(name) ?? new Float64Array(channels);
        for (let i = 0; i < values.length; i++) sum[Math.floor(i / inner) % channels] += values[i];
        sums.set(name, sum);
        counts.set(name, (counts.get(name) ?? 0) + values.length / channels);
      }
      ctx.progress({ phase: 'quantize', current: ++seen, total: samples, message: 'bias correction' });
    }
  } finally {
    await session.release();
  }
  const meanOf = (name: string) => {
    const sum = sums.get(name);
    return sum && sum.map((v) => v / counts.get(name)!);
  };
  let layers = 0;
  let totalShift = 0;
  let roundingShift = 0;
  let channels = 0;
  for (const t of targets) {
    const mean = meanOf(t.input);
    if (!mean) continue;
    const shift = meanShift(t, t.wDeq.map((v, i) => v - t.wFloat[i]), mean);
    const meanDq = t.inputDq ? meanOf(t.inputDq) : undefined;
    if (meanDq && meanDq.length === mean.length) {
      const rounding = meanShift(t, t.wDeq, meanDq.map((v, i) => v - mean[i]));
      for (let c = 0; c < shift.length; c++) {
        shift[c] += rounding[c];
        roundingShift += Math.abs(rounding[c]);
      }
    }
    const init = quantProto.graph.initializer.find((x) => x.name === t.biasQ)!;
    const values = new Int32Array(Uint8Array.from(init.rawData!).buffer);
    if (values.length !== shift.length) continue;
    for (let c = 0; c < values.length; c++) {
      const scale = t.biasScale.length === 1 ? t.biasScale[0] : t.biasScale[c];
      values[c] -= Math.round(shift[c] / scale);
      totalShift += Math.abs(shift[c]);
      channels++;
    }
    init.rawData = new Uint8Array(values.buffer);
    layers++;
  }
  const n = Math.max(1, channels);
  return [{ kind: 'bias-correction', detail: `${layers} layer(s), ${channels} channel bias(es) corrected for the mean shift of weight and input rounding over ${seen} sample(s); mean |shift| ${(totalShift / n).toExponential(2)} (input rounding ${(roundingShift / n).toExponential(2)})` }];
}
