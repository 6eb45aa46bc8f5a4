/**
 * Retries one S3 call with exponential backoff and jitter (half fixed, half random). Only retryable StorageErrors
 * (5xx, throttling, resets, timeouts) are retried; each retry is announced as a `storage.retry`
 * event before the wait. The body of a retried call must be replayable: the driver only retries
 * calls whose body is a Buffer (single PUTs, parts, DeleteObjects) or that have none.
 */
import { AbortError, StorageError, throwIfAborted } from '../errors';
import { emit, type ObserveOptions } from '../observe';
import { toStorageError, type S3ErrorContext } from './s3-errors';

export interface RetryPolicy {
  /** Total attempts including the first. */
  maxAttempts: number;
  /** Delay before the first retry; doubles with each retry (half of it random), capped at 20 s. */
  baseDelayMs: number;
}

const MAX_DELAY_MS = 20_000;

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError('wait aborted', { cause: signal.reason }));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new AbortError('wait aborted', { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function withRetry<T>(
  ctx: S3ErrorContext,
  policy: RetryPolicy,
  observe: ObserveOptions,
  signal: AbortSignal | undefined,
  call: (attempt: number) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal, `s3 ${ctx.operation}`);
    try {
      return await call(attempt);
    } catch (raw) {
      const err = signal?.aborted ? new AbortError(`s3 ${ctx.operation} aborted`) : toStorageError(raw, ctx);
      if (!(err instanceof StorageError) || !err.retryable || attempt >= policy.maxAttempts) throw err;
      const cap = Math.min(MAX_DELAY_MS, policy.baseDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
      emit(observe, {
        type: 'storage.retry',
        operation: ctx.operation,
        key: ctx.key,
        attempt,
        delayMs,
        httpStatus: err.httpStatus,
        code: err.code,
      });
      observe.logger?.warn('s3 call failed, retrying', {
        operation: ctx.operation,
        key: ctx.key,
        attempt,
        delayMs,
        code: err.code,
        httpStatus: err.httpStatus,
      });
      await sleep(delayMs, signal);
    }
  }
}
