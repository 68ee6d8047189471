/** Resolves or rejects like `promise`, but rejects with the signal's reason as soon as it aborts. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** A promise that can be awaited repeatedly and is re-armed after each `notify`. */
export class Notifier {
  #resolve: () => void = () => {};
  #promise = this.#arm();

  #arm(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
    });
  }

  wait(): Promise<void> {
    return this.#promise;
  }

  notify(): void {
    this.#resolve();
    this.#promise = this.#arm();
  }
}
