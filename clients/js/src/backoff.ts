/**
 * Reconnection delay with capped exponential backoff and full jitter: a uniform draw from
 * `[0, min(cap, base * 2^attempt))`. Full jitter spreads a crowd of clients that lost the same
 * server over the whole window, so a restarted server is not hit by all of them at once.
 *
 * @param attempt - reconnection attempts already made since the last successful connection (0 first)
 * @param base - `reconnectDelay` in ms
 * @param cap - `reconnectDelayMax` in ms
 * @param random - a source of uniform numbers in [0, 1)
 */
export function backoffDelay(
  attempt: number,
  base: number,
  cap: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(cap, base * 2 ** attempt);
  return Math.floor(random() * ceiling);
}
