// @qforge/onnx: ONNX model I/O and graph editing. The public API of the package.
export { DATA_TYPE_BYTES, DATA_TYPE_NAMES, DataType } from './proto';
export { decodeTensorProto, encodeTensorProto } from './proto';
export type { AttributeProto, DimensionProto, GraphProto, Int64, ModelProto, NodeProto, OperatorSetId, TensorProto, TypeProto, UnknownField, ValueInfoProto } from './proto';
export { checkGraphStructure } from './check';
export { MAX_INLINE_BYTES, allGraphs, decodeModel, encodeModel, loadModel, saveModel } from './model';
export type { LoadedModel, SaveOptions } from './model';
export {
  GraphIndex,
  attr,
  attrFloat,
  attrInt,
  attrInt64s,
  attrInts,
  attrString,
  floatAttr,
  graphInputs,
  graphOuterReferences,
  graphOutputs,
  int64ToNumber,
  intAttr,
  intsAttr,
  makeNode,
  makeTensor,
  makeValueInfo,
  nodeReads,
  opsetVersion,
  subgraphOuterReferences,
  subgraphsOf,
  tensorAttr,
  halfToFloat,
  tensorToFloat32,
  tensorToInt64s,
  tensorToInts,
  topologicalSort,
  uniqueNamer,
  valueInfoToTensorInfo,
  withExtraOutputs,
} from './graph';
export { describeModel } from './inspect';
