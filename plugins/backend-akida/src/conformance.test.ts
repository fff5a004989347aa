import { runBackendConformance } from '@qforge/testkit';
import { backendFactory } from './index';

// No SDK here: the kit checks the contract, detection and that every verb fails with a coded error.
runBackendConformance({ factory: backendFactory });
