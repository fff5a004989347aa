// @qforge/backend-tfjs: the entry the registry loads.
import type { BackendFactory } from '@qforge/core';
import { TfjsBackend } from './backend';

export { TFJS_CAPABILITIES, TfjsBackend, fp32TwinPath } from './backend';
export { chooseEngine, loadTf, loadTfModel, readArtifacts } from './engine';
export type { LoadedTfModel, TfjsEngine } from './engine';
export { readModelJson } from './model-json';
export { lowerLayersModel } from './keras-lower';
export { graphInputs, lowerGraphModel } from './graph-lower';
export type { GraphConst, GraphLowering, GraphNode } from './graph-lower';
export { FakeQuantTwin, trainTwin } from './qat';
export type { QatRecord } from './qat';
export { IrExecutor, fuseIr } from './ir';
export type { IrGraph, IrOp } from './ir';
export { convertToFloatTflite, convertToTflite } from './tflite-convert';
export type { TfliteConversion, TfliteConvertOptions, TfliteFloatConversion, TfliteIoType } from './tflite-convert';
export { loadTfliteInterpreter, tfliteRuntimeVersion } from './tflite-runtime';
export type { TfliteInterpreter, TfliteTensorMeta } from './tflite-runtime';
export { QFORGE_INT8_SCHEME, compressLayersModel, decodeCompressedWeights } from './weight-compress';
export const backendFactory: BackendFactory = { id: 'tfjs', create: () => new TfjsBackend() };
export default backendFactory;
