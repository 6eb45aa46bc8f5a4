/**
 * Maps what the AWS SDK throws (service exceptions, Node network errors, timeouts, aborts) to
 * StorageError with a stable code. Messages are built here from the operation, the bucket/key, the
 * HTTP status and the S3 error code only: never from request data, so credentials cannot leak. The
 * `cause` is a fresh Error holding only the SDK error's name, code and message (S3 never sees the
 * secret key, and nothing of the signed request is copied).
 */
import { AbortError, StorageError, type CodeOf } from '../errors';

export interface S3ErrorContext {
  /** `put`, `get`, `head`, `list`, `delete`, `upload-part`, … */
  operation: string;
  bucket: string;
  /** The caller's key (without the storage prefix). */
  key?: string;
  /** Texts that must never appear in the error (the configured secret key, session token). */
  secrets?: readonly string[];
}

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: unknown;
}

/** Node and SDK network failures where trying again may succeed. */
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** S3 error codes that mean "try again later" whatever the status. */
const RETRYABLE_S3_CODES = new Set([
  'SlowDown',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'TimeoutError',
  'RequestTimeTooSkewed',
]);

const ACCESS_DENIED_CODES = new Set([
  'AccessDenied',
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
]);

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function redact(text: string, secrets: readonly string[] | undefined): string {
  let out = text;
  for (const s of secrets ?? []) {
    if (s.length >= 4) out = out.split(s).join('[redacted]');
  }
  return out;
}

/** The HTTP status of an SDK error, when the store answered at all. */
export function httpStatusOf(err: unknown): number | undefined {
  const status = (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** True for errors that come from an aborted AbortSignal (ours or the SDK's rendering of it). */
export function isAbortLike(err: unknown): boolean {
  if (err instanceof AbortError) return true;
  const name = (err as SdkErrorShape | undefined)?.name;
  return name === 'AbortError';
}

/** The S3 error code (`NoSuchKey`, `SlowDown`, …) or the Node error code (`ECONNRESET`). */
function errorCodeOf(err: SdkErrorShape): string | undefined {
  return str(err.Code) ?? str(err.code) ?? (str(err.name) !== 'Error' ? str(err.name) : undefined);
}

function classify(
  status: number | undefined,
  code: string | undefined,
  networkCode: string | undefined,
  operation: string,
): { code: CodeOf<'StorageError'>; retryable: boolean } {
  if (code !== undefined && ACCESS_DENIED_CODES.has(code))
    return { code: 'STORAGE_ACCESS_DENIED', retryable: false };
  if (code === 'NoSuchBucket') return { code: 'STORAGE_BUCKET_NOT_FOUND', retryable: false };
  if (status === 403) return { code: 'STORAGE_ACCESS_DENIED', retryable: false };
  if (
    code === 'NoSuchKey' ||
    (status === 404 && (code === 'NotFound' || operation === 'get' || operation === 'head'))
  ) {
    return { code: 'STORAGE_NOT_FOUND', retryable: false };
  }
  if (status === 412 || code === 'PreconditionFailed') return { code: 'STORAGE_CONFLICT', retryable: false };
  if (status === 416 || code === 'InvalidRange') return { code: 'STORAGE_INVALID_RANGE', retryable: false };
  if (code === 'EntityTooLarge' || code === 'QuotaExceeded')
    return { code: 'STORAGE_NO_SPACE', retryable: false };
  if (code === 'KeyTooLongError' || code === 'InvalidObjectName')
    return { code: 'STORAGE_INVALID_KEY', retryable: false };
  if (status !== undefined && (status >= 500 || status === 429))
    return { code: 'STORAGE_UNAVAILABLE', retryable: true };
  if (code !== undefined && RETRYABLE_S3_CODES.has(code))
    return { code: 'STORAGE_UNAVAILABLE', retryable: true };
  if (status === undefined && networkCode !== undefined && RETRYABLE_NETWORK_CODES.has(networkCode)) {
    return { code: 'STORAGE_UNAVAILABLE', retryable: true };
  }
  if (status === undefined) {
    // No answer from the store at all (socket closed, unparsable response): a transport failure.
    return { code: 'STORAGE_UNAVAILABLE', retryable: true };
  }
  return { code: 'STORAGE_IO', retryable: false };
}

/** Turns anything the SDK threw into a StorageError (or AbortError); passes pgark errors through. */
export function toStorageError(err: unknown, ctx: S3ErrorContext): StorageError | AbortError {
  if (err instanceof StorageError || err instanceof AbortError) return err;
  if (isAbortLike(err)) return new AbortError(`s3 ${ctx.operation} aborted`);
  const e = (err ?? {}) as SdkErrorShape;
  const status = httpStatusOf(err);
  const s3Code = errorCodeOf(e);
  const networkCode = str(e.code);
  const { code, retryable } = classify(status, s3Code, networkCode, ctx.operation);
  const where = ctx.key !== undefined ? `${ctx.bucket}/${ctx.key}` : `bucket ${ctx.bucket}`;
  const answer = [status !== undefined ? `http ${status}` : 'no http answer', s3Code]
    .filter(Boolean)
    .join(' ');
  const message = redact(`s3 ${ctx.operation} of ${where} failed (${answer})`, ctx.secrets);
  const causeText = redact(
    [...new Set([str(e.name), s3Code]), str(e.message)].filter(Boolean).join(': '),
    ctx.secrets,
  );
  const cause = new Error(causeText);
  return new StorageError(code, message, {
    key: ctx.key,
    httpStatus: status,
    retryable,
    cause,
    hint: hintFor(code),
  });
}

function hintFor(code: CodeOf<'StorageError'>): string | undefined {
  switch (code) {
    case 'STORAGE_ACCESS_DENIED':
      return 'check the access key, secret key and region, and that the credentials may use this bucket';
    case 'STORAGE_BUCKET_NOT_FOUND':
      return 'create the bucket first or fix the bucket name';
    case 'STORAGE_UNAVAILABLE':
      return 'the store failed or could not be reached; the operation can be retried';
    default:
      return undefined;
  }
}
