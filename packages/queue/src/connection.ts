// Reaching Redis: a quick reachability check that fails with E_QUEUE_UNAVAILABLE, and BullMQ's connection options.
import { Redis } from 'ioredis';
import { errQueueUnavailable } from '@qforge/core';
import { checkQueueUrl, redactQueueUrl } from './url';

/** The BullMQ queue all qforge trials share (one Redis database can serve several teams' prefixes). */
export const TRIAL_QUEUE_NAME = 'trials';
/** Keys live under `qforge:trials:*`. */
export const TRIAL_QUEUE_PREFIX = 'qforge';

/** How long the reachability check waits before calling the queue unavailable. @defaultValue 3000 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

/**
 * Connects once, PINGs and disconnects. BullMQ itself retries a lost connection forever (right for
 * a long sweep whose Redis restarts), so an unreachable queue must be caught here, before any job
 * is added or any worker waits.
 */
export async function checkQueueReachable(url: string, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<void> {
  checkQueueUrl(url);
  const client = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  // Failures arrive through connect()'s rejection; the event would otherwise print an unhandled error.
  client.on('error', () => undefined);
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref());
  try {
    await Promise.race([client.connect().then(() => client.ping()), timer]);
  } catch (e) {
    throw errQueueUnavailable(redactQueueUrl(url), (e as Error).message || String(e), e);
  } finally {
    client.disconnect();
  }
}

/** BullMQ connection options for a queue URL (workers need `maxRetriesPerRequest: null`). */
export function bullConnection(url: string): { url: string; maxRetriesPerRequest: null } {
  return { url, maxRetriesPerRequest: null };
}
