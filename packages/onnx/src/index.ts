// @qforge/onnx: ONNX model I/O and graph editing. The public API of the package.
export { DATA_TYPE_BYTES, DATA_TYPE_NAMES, DataType } from './proto';
export type { AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetId, TensorProto, ValueInfoProto } from './proto';
export { MAX_INLINE_BYTES, decodeModel, encodeModel, loadModel, saveModel } from './model';
export type { LoadedModel, SaveOptions } from './model';
export {
  GraphIndex,
  attr,
  attrFloat,
  attrInt,
  attrInts,
  attrString,
  floatAttr,
  graphInputs,
  graphOutputs,
  intAttr,
  intsAttr,
  makeNode,
  makeTensor,
  makeValueInfo,
  opsetVersion,
  tensorAttr,
  halfToFloat,
  tensorToFloat32,
  tensorToInts,
  topologicalSort,
  uniqueNamer,
  valueInfoToTensorInfo,
  withExtraOutputs,
} from './graph';
export { describeModel } from './inspect';
