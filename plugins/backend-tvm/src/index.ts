// @qforge/backend-tvm: the entry the registry loads.
import type { BackendFactory } from '@qforge/core';
import { TvmBackend } from './backend';

export { TVM_CAPABILITIES, TVM_PROBE, TvmBackend } from './backend';
export const backendFactory: BackendFactory = { id: 'tvm', create: () => new TvmBackend() };
export default backendFactory;
