import { setFlagsFromString } from 'node:v8';
import type { Logger } from 'pino';

// V8's trade between memory and CPU, chosen by what this process serves. With many keys in the key
// cache, coming and going under load, V8 lets the heap grow to several times what is live before
// it collects: RSS rose past 350 MB over a live heap of 70 MB at 100 000 keys (issue #7 wants under
// 200 MB), and V8's --optimize-for-size keeps it near what is live (185 MB). With a few hot keys the
// live heap stays small anyway, and the same flag cost 45 % more CPU per gRPC call and up to 25 %
// per REST call (bench/README.md, "Memory"). So the process runs for speed until the cache holds
// many keys, and for size from then on, back to speed once it holds few again. V8 reads the flag at
// each collection, so switching it while running takes effect at the next one.

export type HeapMode = 'speed' | 'size';

/** Cached keys above which the process runs for size, and below which it goes back to speed. */
export const SIZE_ABOVE_KEYS = 1000;
export const SPEED_BELOW_KEYS = 500;
const CHECK_EVERY_MS = 2000;

export function nextHeapMode(current: HeapMode, cachedKeys: number): HeapMode {
  if (current === 'speed' && cachedKeys > SIZE_ABOVE_KEYS) return 'size';
  if (current === 'size' && cachedKeys < SPEED_BELOW_KEYS) return 'speed';
  return current;
}

/** Checks the key cache every 2 s and switches V8's mode when the count crosses a threshold. */
export function watchHeapMode(cachedKeys: () => number, logger: Logger): { stop(): void } {
  let mode: HeapMode = 'speed';
  const timer = setInterval(() => {
    const keys = cachedKeys();
    const next = nextHeapMode(mode, keys);
    if (next === mode) return;
    setFlagsFromString(next === 'size' ? '--optimize-for-size' : '--no-optimize-for-size');
    mode = next;
    logger.info({ heapMode: next, cachedKeys: keys }, next === 'size' ? 'many keys cached: V8 now optimises for memory' : 'few keys cached: V8 now optimises for speed');
  }, CHECK_EVERY_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
