import { setMaxListeners } from 'node:events';

/**
 * An AbortController whose signal every request of a pipeline listens to: dozens of uploads,
 * downloads, retries and timers at once is the design, not a leak, so Node's default warning at 11
 * listeners (printed on stderr, in the middle of a user's progress output) is switched off.
 */
export function sharedAbortController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
