// The contract of one op family in static quantization: what the driver (quantize-qdq.ts) asks an op quantizer.
import type { NodeProto, GraphIndex } from '@qforge/onnx';

/**
 * How a quantized node's output gets its quantization parameters.
 * - `own`: the output's calibrated range (after a fused Relu/Clip when `fusesActivation`).
 * - `shared`: input 0's parameters, so no requantization happens (ops that only move or select values).
 * - `fixed`: a range known from the op's math (Sigmoid and Softmax in [0, 1]), no calibration needed.
 */
export type OutputRule = { kind: 'own' } | { kind: 'shared' } | { kind: 'fixed'; min: number; max: number };

/** y = factor·x, x being the node's tensor input `input` (the other input is a scalar constant). */
export interface AffineMap {
  input: string;
  /** > 0: a scale stays positive. */
  factor: number;
}

/**
 * The role of a family in the graph.
 * - `weighted`: a constant weight at input[1] (and an optional bias at input[2]) stored int8.
 * - `activation`: an int8 kernel over activations only (QLinearAdd, QLinearGlobalAveragePool, …).
 * - `pass-through`: data movement that runs on the integers when input and output share parameters;
 *   quantized only where its input already is and its outputs feed int8 consumers.
 * - `recurrent`: rewritten to a dynamic-quantization kernel outside the QDQ driver (LSTM).
 */
export type OpRole = 'weighted' | 'activation' | 'pass-through' | 'recurrent';

/** What a family sees of the graph while deciding. */
export interface OpContext {
  idx: GraphIndex;
  /** The model's default-domain opset. */
  opset: number;
}

/** One op family: everything static quantization knows about these op types, in one place. */
export interface OpQuantizer {
  /** The family's name in docs and reports ("convolution", "element-wise"). */
  readonly family: string;
  /** ONNX op types (default domain) the family handles. */
  readonly opTypes: readonly string[];
  readonly role: OpRole;
  /**
   * Whether default static quantization (no `--op-types`) quantizes the family. Families that add
   * work on this runtime stay opt-in.
   */
  readonly byDefault: boolean;
  /** Why this node stays float, or undefined when the family can quantize it. */
  refuse?(node: NodeProto, ctx: OpContext): string | undefined;
  /**
   * Input indices carrying activations quantized from their own calibrated range. Constant float
   * inputs of `activation` families listed here are quantized from their values instead.
   */
  activationInputs(node: NodeProto, ctx: OpContext): number[];
  /** How the output's parameters are chosen (weighted and activation families). */
  output(node: NodeProto, ctx: OpContext): OutputRule;
  /**
   * When the node multiplies one tensor by a positive scalar constant, it can leave the graph where
   * int8 kernels read its output: DQ(q, s, z)·f = DQ(q, s·f, z) exactly. The consumers'
   * DequantizeLinear then reads the source's integers: no kernel, no extra rounding. Tried before
   * the family's own int8 kernel.
   */
  affine?(node: NodeProto, ctx: OpContext): AffineMap | undefined;
  /**
   * Whether the runtime has an int8 kernel with a float output for this node (ONNX Runtime fuses
   * `DQ → MatMul` without a Q into MatMulIntegerToFloat, for a constant B only): an output that
   * only float ops read is then left unquantized — no rounding of logits, no Q/DQ work.
   */
  floatOutput?(node: NodeProto, ctx: OpContext): boolean;
  /** A single Relu/Clip(0, …) consumer is absorbed into the output range (ONNX Runtime drops it before a Q). */
  readonly fusesActivation?: boolean;
  /** The output-channel axis of the weight at input[1], or undefined for one scale per tensor. */
  weightAxis?(node: NodeProto, rank: number): number | undefined;
  /**
   * Set when the runtime has no int8 kernel for the family: only the weights are stored int8 and the
   * op runs as float (the reason goes into the decision).
   */
  readonly weightOnlyReason?: string;
  /**
   * Bias correction: the per-output-channel shift W·m of the weight (or its rounding error) `w` of
   * shape `wDims` applied to a per-input-channel mean `mean`.
   */
  biasShift?(node: NodeProto, w: Float32Array, wDims: number[], mean: Float64Array): Float64Array;
  /**
   * QOperator form: the integer operator replacing `DQ → node → Q`, given the pattern's pieces;
   * undefined keeps the QDQ form.
   */
  toQOperator?(node: NodeProto, pattern: QOperatorPattern): NodeProto | undefined;
}

/** The pieces of a `DQ(x) → node(DQ(w), DQ(b)) → [Relu] → Q(y)` pattern, by tensor name. */
export interface QOperatorPattern {
  x: [string, string, string];
  /** The weight's quantized initializer, scale and zero point (weighted families). */
  w: [string, string, string];
  y: [string, string];
  /** The int32 bias initializer, when the node has one. */
  bias?: string;
  /** Name of the Q's output: the integer operator writes it. */
  output: string;
  /** The model's default-domain opset. */
  opset: number;
}
