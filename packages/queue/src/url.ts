// Queue URLs: parsed once, and never shown or recorded with their credentials.
import { errInvalidOption } from '@qforge/core';

/** `redis://user:secret@host:6379/2` → `redis://user:***@host:6379/2`; anything unparsable is hidden whole. */
export function redactQueueUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '<queue url>';
  }
}

/** Checks a `--queue` value: a redis:// or rediss:// URL with a host. */
export function checkQueueUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw errInvalidOption('--queue', `${redactQueueUrl(url)} is not a URL`, 'Pass redis://host:port (or rediss:// for TLS), e.g. redis://127.0.0.1:6379.');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw errInvalidOption('--queue', `${redactQueueUrl(url)} is not a redis:// or rediss:// URL`, 'Pass redis://host:port, e.g. redis://127.0.0.1:6379.');
  if (!u.hostname) throw errInvalidOption('--queue', `${redactQueueUrl(url)} names no host`, 'Pass redis://host:port.');
  return url;
}

/**
 * Replaces the password of any redis URL inside command-line arguments, so the command recorded in
 * a report or printed in a log never carries a credential.
 */
export function redactArgs(args: readonly string[]): string[] {
  return args.map((a) => a.replace(/rediss?:\/\/[^\s]+/g, (m) => redactQueueUrl(m)));
}
