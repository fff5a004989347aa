// @qforge/backend-onnxruntime: the entry the registry loads; exports the factory and the class.
import type { BackendFactory } from '@qforge/core';
import { OnnxRuntimeBackend } from './backend';

export { ONNXRUNTIME_CAPABILITIES, OnnxRuntimeBackend } from './backend';
export { STATIC_OP_TYPES } from './quantize-qdq';
export { DYNAMIC_OP_TYPES } from './quantize-dynamic';

export const backendFactory: BackendFactory = { id: 'onnxruntime', create: () => new OnnxRuntimeBackend() };
export default backendFactory;
