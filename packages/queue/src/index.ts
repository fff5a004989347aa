// @qforge/queue: sweeps, sensitivity and accuracy search spread over workers (BullMQ over Redis).
export { DEFAULT_CONNECT_TIMEOUT_MS, TRIAL_QUEUE_NAME, TRIAL_QUEUE_PREFIX, checkQueueReachable } from './connection';
export { runTrials } from './coordinator';
export type { QueueStatus, RunTrialsOptions, TrialOutcome, TrialRequest } from './coordinator';
export { canonicalJson, trialJobId } from './job-id';
export { connectedWorkers, listTrials } from './listing';
export type { ListTrialsOptions, TrialList, TrialListing, TrialState } from './listing';
export { redisServerAvailable, startLocalRedis } from './local-redis';
export type { LocalRedis } from './local-redis';
export { describeMachine, formatMachine, machineKey } from './machine';
export type { MachineInfo } from './machine';
export type { TrialJobData, TrialJobResult, TrialProgress } from './trial';
export { checkQueueUrl, redactArgs, redactQueueUrl } from './url';
export { startTrialWorker } from './worker';
export type { TrialHandler, TrialHandlerContext, TrialWorker, TrialWorkerOptions } from './worker';
