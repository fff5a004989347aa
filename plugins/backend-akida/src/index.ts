// @qforge/backend-akida: the entry the registry loads.
import type { BackendFactory } from '@qforge/core';
import { AkidaBackend } from './backend';

export { AKIDA_CAPABILITIES, AKIDA_PROBE, AkidaBackend } from './backend';
export const backendFactory: BackendFactory = { id: 'akida', create: () => new AkidaBackend() };
export default backendFactory;
