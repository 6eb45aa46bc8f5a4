/**
 * `put` for the s3 driver: a small body as one PutObject, anything else as a multipart upload with
 * a fixed memory bound (part size x (queue size + 1)). Our own loop rather than lib-storage's
 * `Upload`; docs/design-storage.md says why (abort not waiting for in-flight parts, a fixed part
 * size that can run into the 10,000-part limit mid-stream, a conditional PutObject for small
 * bodies that Swift refuses, no per-retry events, no ETag check on Complete).
 *
 * Guarantees: nothing is visible under the key unless Complete (or the single PutObject) returned
 * an ETag; on any failure or abort the in-flight parts are allowed to settle and then the upload is
 * aborted, so no multipart upload is left behind.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';
// The SDK's classes, required on first use (start-up cost of every archive-push/fetch process: s3-sdk.ts).
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
} from './s3-sdk';
import { AbortError, PgarkError, StorageError } from '../errors';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import { httpStatusOf, toStorageError, type S3ErrorContext } from './s3-errors';
import { partSizeAt, planParts, MAX_PARTS } from './s3-part-plan';
import { partBufferPoolFor } from './s3-part-pool';
import { bufferPartSource, streamPartSource, type Part, type PartSource } from './s3-part-source';
import { withRetry, type RetryPolicy } from './s3-retry';
import type { PutOptions, PutResult } from './storage';

export interface UploadTarget {
  client: S3Client;
  bucket: string;
  /** The caller's key (for errors and events). */
  key: string;
  /** The full object key (prefix + key). */
  objectKey: string;
  partSizeBytes: number;
  queueSize: number;
  retry: RetryPolicy;
  observe: ObserveOptions;
  secrets: readonly string[];
}

export async function uploadObject(
  target: UploadTarget,
  body: Readable | Buffer,
  options: PutOptions = {},
): Promise<PutResult> {
  const { contentLength, sizeHint, signal } = options;
  if (signal?.aborted) throw new AbortError(`s3 put of ${target.key} aborted`);
  const isBuffer = Buffer.isBuffer(body);
  if (isBuffer && contentLength !== undefined && contentLength !== body.length) {
    throw shortBody(target, contentLength, body.length);
  }
  const exactLength = isBuffer ? body.length : contentLength;
  const plan = planParts(target.partSizeBytes, exactLength, sizeHint);
  // One put holds at most queueSize part buffers: the next part is read only once fewer than
  // queueSize are in flight (see uploadMultipart). The pool has queueSize + 1, so that a concurrent
  // small put (a WAL segment during a backup) finds one too. It belongs to the client: consecutive
  // puts reuse the same memory (s3-part-pool.ts).
  const source: PartSource = isBuffer
    ? bufferPartSource(body)
    : streamPartSource(body, partBufferPoolFor(target.client, target.queueSize + 1));

  // Abort of the caller's signal: stop reading at once (a stalled producer would otherwise keep us
  // waiting) and cancel in-flight requests; the upload is then aborted below.
  const internal = new AbortController();
  const onAbort = (): void => {
    internal.abort(signal?.reason);
    source.destroy(new AbortError(`s3 put of ${target.key} aborted`));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let first: Part | undefined;
  try {
    try {
      first = await source.next(partSizeAt(plan, 1));
    } catch (e) {
      throw readFailure(target, e, signal);
    }
    const endedInFirstPart = first.data.length < partSizeAt(plan, 1) || exactLength === first.data.length;
    // A conditional PutObject is refused by Swift (501); ifAbsent therefore always goes through a
    // conditional CompleteMultipartUpload, which Swift and AWS both honour (design-storage.md).
    if (endedInFirstPart && !options.ifAbsent) {
      if (contentLength !== undefined && first.data.length !== contentLength) {
        throw shortBody(target, contentLength, first.data.length);
      }
      const etag = await putSingle(target, first.data, internal.signal, signal);
      return { key: target.key, size: first.data.length, sha256: source.digest(), etag };
    }
    return await uploadMultipart(
      target,
      source,
      plan,
      first,
      contentLength,
      !!options.ifAbsent,
      internal.signal,
      signal,
    );
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // The single PutObject's buffer, or part 1 if the multipart upload failed before sending it
    // (once sent, its request has settled by now and this is a no-op).
    first?.release();
  }
}

function shortBody(target: UploadTarget, expected: number, actual: number): StorageError {
  return new StorageError(
    'STORAGE_INCOMPLETE_UPLOAD',
    `body of ${target.key} does not match contentLength ${expected} (${actual} bytes read)`,
    { key: target.key },
  );
}

/** A failure of the caller's stream is passed on as is (or as AbortError after an abort). */
function readFailure(target: UploadTarget, e: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return new AbortError(`s3 put of ${target.key} aborted`);
  if (e instanceof PgarkError) return e;
  return new StorageError('STORAGE_IO', `reading the body of ${target.key} failed`, {
    key: target.key,
    cause: e,
    retryable: false,
  });
}

function ctx(target: UploadTarget, operation: string): S3ErrorContext {
  return { operation, bucket: target.bucket, key: target.key, secrets: target.secrets };
}

async function putSingle(
  target: UploadTarget,
  data: Buffer,
  requestSignal: AbortSignal,
  callerSignal: AbortSignal | undefined,
): Promise<string> {
  const out = await withRetry(ctx(target, 'put'), target.retry, target.observe, callerSignal, () =>
    target.client.send(
      new PutObjectCommand({
        Bucket: target.bucket,
        Key: target.objectKey,
        Body: data,
        ContentLength: data.length,
      }),
      { abortSignal: requestSignal },
    ),
  );
  return confirmedEtag(out.ETag, target.key);
}

async function uploadMultipart(
  target: UploadTarget,
  source: PartSource,
  plan: ReturnType<typeof planParts>,
  first: Part,
  contentLength: number | undefined,
  ifAbsent: boolean,
  requestSignal: AbortSignal,
  callerSignal: AbortSignal | undefined,
): Promise<PutResult> {
  const log = target.observe.logger ?? noopLogger;
  const created = await withRetry(
    ctx(target, 'create-multipart-upload'),
    target.retry,
    target.observe,
    callerSignal,
    () =>
      // Not cancelled mid-request: the store may create the upload although the client gave up,
      // and an upload whose id we never learnt could not be aborted. An abort is acted on below.
      target.client.send(new CreateMultipartUploadCommand({ Bucket: target.bucket, Key: target.objectKey })),
  );
  const uploadId = created.UploadId;
  if (!uploadId) {
    throw new StorageError('STORAGE_INCOMPLETE_UPLOAD', `the store returned no upload id for ${target.key}`, {
      key: target.key,
    });
  }
  if (requestSignal.aborted) {
    source.destroy();
    await abortUpload(target, uploadId);
    throw new AbortError(`s3 put of ${target.key} aborted`);
  }
  log.debug('s3 multipart upload started', { key: target.key, partSizeBytes: plan.baseSize });

  const parts: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  const startPart = (partNumber: number, part: Part): void => {
    const data = part.data;
    const p = withRetry({ ...ctx(target, 'upload-part') }, target.retry, target.observe, callerSignal, () =>
      target.client.send(
        new UploadPartCommand({
          Bucket: target.bucket,
          Key: target.objectKey,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: data,
          ContentLength: data.length,
        }),
        { abortSignal: requestSignal },
      ),
    ).then((out) => {
      if (!out.ETag) {
        throw new StorageError(
          'STORAGE_INCOMPLETE_UPLOAD',
          `part ${partNumber} of ${target.key} has no etag`,
          {
            key: target.key,
          },
        );
      }
      parts.push({ PartNumber: partNumber, ETag: out.ETag });
      emit(target.observe, { type: 'storage.upload.part', key: target.key, partNumber, bytes: data.length });
    });
    const settled = p
      .catch((e: unknown) => {
        failure ??= e;
      })
      .finally(() => part.release());
    inFlight.add(settled);
    void settled.finally(() => inFlight.delete(settled));
  };

  // A part read from the body but not (yet) handed to startPart; released if the loop stops.
  let unsent: Part | undefined = first;
  try {
    let part = first;
    for (let partNumber = 1; ; partNumber++) {
      if (partNumber > MAX_PARTS) {
        // Unreachable by construction of the plan (a body beyond S3's 5 TiB object limit).
        throw new StorageError('STORAGE_NO_SPACE', `${target.key} needs more than ${MAX_PARTS} parts`, {
          key: target.key,
        });
      }
      if (contentLength !== undefined && source.bytesRead > contentLength) {
        throw shortBody(target, contentLength, source.bytesRead);
      }
      // Part 1 is always sent (an empty body under ifAbsent is one empty part); later parts only
      // when the body still had bytes.
      if (part.data.length > 0 || partNumber === 1) startPart(partNumber, part);
      unsent = undefined;
      const ended = part.data.length < partSizeAt(plan, partNumber) || source.bytesRead === contentLength;
      if (ended) break;
      // Memory bound: the next part is read while at most queueSize - 1 parts are in flight, so at
      // most queueSize part buffers are held at once (a settled part's buffer is released before
      // the race below resolves).
      while (inFlight.size >= target.queueSize && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined || requestSignal.aborted) break;
      try {
        part = await source.next(partSizeAt(plan, partNumber + 1));
      } catch (e) {
        throw readFailure(target, e, callerSignal);
      }
      unsent = part;
      if (part.data.length === 0) break;
    }
    // Let every in-flight part settle before deciding: an abort while parts are still being written
    // could otherwise leave parts behind on some stores.
    while (inFlight.size > 0) await Promise.race(inFlight);
    if (callerSignal?.aborted) throw new AbortError(`s3 put of ${target.key} aborted`);
    if (failure !== undefined) throw toStorageError(failure, ctx(target, 'upload-part'));
    if (contentLength !== undefined && source.bytesRead !== contentLength) {
      throw shortBody(target, contentLength, source.bytesRead);
    }
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    const etag = await complete(target, uploadId, parts, ifAbsent, callerSignal);
    log.debug('s3 multipart upload completed', {
      key: target.key,
      parts: parts.length,
      bytes: source.bytesRead,
    });
    return { key: target.key, size: source.bytesRead, sha256: source.digest(), etag };
  } catch (e) {
    source.destroy();
    // In-flight parts settle first (they were cancelled through requestSignal on abort).
    while (inFlight.size > 0) await Promise.race(inFlight);
    await abortUpload(target, uploadId);
    throw e instanceof PgarkError ? e : toStorageError(e, ctx(target, 'put'));
  } finally {
    unsent?.release();
  }
}

/**
 * CompleteMultipartUpload, checked for an ETag. With ifAbsent it carries If-None-Match: * and a 412
 * becomes STORAGE_CONFLICT (Swift answers 412 with code InvalidRequest, so the status decides).
 * If a retried Complete finds the upload gone (or, with ifAbsent, the key present), an earlier
 * attempt may have succeeded with its answer lost: the object is then ours exactly when its ETag
 * is the multipart ETag of our parts.
 */
async function complete(
  target: UploadTarget,
  uploadId: string,
  parts: CompletedPart[],
  ifAbsent: boolean,
  signal: AbortSignal | undefined,
): Promise<string> {
  let attempts = 0;
  try {
    const out = await withRetry(
      ctx(target, 'complete-multipart-upload'),
      target.retry,
      target.observe,
      signal,
      (n) => {
        attempts = n;
        return target.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: target.bucket,
            Key: target.objectKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
          }),
        );
      },
    );
    return confirmedEtag(out.ETag, target.key);
  } catch (e) {
    const status = e instanceof StorageError ? e.httpStatus : httpStatusOf(e);
    const maybeOurs = attempts > 1 && (status === 404 || (ifAbsent && status === 412));
    if (maybeOurs) {
      const etag = await ourObjectEtag(target, parts);
      if (etag !== undefined) return etag;
    }
    if (status === 412) {
      throw new StorageError('STORAGE_CONFLICT', `${target.key} already exists`, {
        key: target.key,
        httpStatus: 412,
        retryable: false,
      });
    }
    throw e;
  }
}

/** The multipart ETag: md5 of the concatenated binary md5s of the parts, then `-<count>`. */
function multipartEtag(parts: CompletedPart[]): string | undefined {
  const md5 = createHash('md5');
  for (const p of parts) {
    const hex = (p.ETag ?? '').replace(/"/g, '');
    if (!/^[0-9a-f]{32}$/i.test(hex)) return undefined;
    md5.update(Buffer.from(hex, 'hex'));
  }
  return `${md5.digest('hex')}-${parts.length}`;
}

async function ourObjectEtag(target: UploadTarget, parts: CompletedPart[]): Promise<string | undefined> {
  const expected = multipartEtag(parts);
  if (expected === undefined) return undefined;
  try {
    const head = await target.client.send(
      new HeadObjectCommand({ Bucket: target.bucket, Key: target.objectKey }),
    );
    return head.ETag?.replace(/"/g, '') === expected ? head.ETag : undefined;
  } catch {
    return undefined;
  }
}

/**
 * AbortMultipartUpload, retried, then checked: a part upload the store was still processing can
 * complete after the abort (the AWS documentation of AbortMultipartUpload says to abort again until
 * ListParts finds the upload gone), so the abort is repeated a few times while ListParts still
 * answers. A failure to abort is logged (the original error is what counts).
 */
async function abortUpload(target: UploadTarget, uploadId: string): Promise<void> {
  const log = target.observe.logger ?? noopLogger;
  const input = { Bucket: target.bucket, Key: target.objectKey, UploadId: uploadId };
  try {
    for (let round = 0; ; round++) {
      await withRetry(ctx(target, 'abort-multipart-upload'), target.retry, target.observe, undefined, () =>
        target.client.send(new AbortMultipartUploadCommand(input)),
      );
      if (!(await uploadStillListed(target, input)) || round >= 3) break;
      await new Promise((r) => setTimeout(r, 200 * (round + 1)));
    }
    log.debug('s3 multipart upload aborted', { key: target.key });
  } catch (e) {
    const err = toStorageError(e, ctx(target, 'abort-multipart-upload'));
    if (err instanceof StorageError && err.httpStatus === 404) return; // already gone
    log.error(
      's3 multipart upload could not be aborted; parts may be left until a lifecycle rule removes them',
      {
        key: target.key,
        code: err.code,
        httpStatus: err instanceof StorageError ? err.httpStatus : undefined,
      },
    );
  }
}

/** True while ListParts still answers for the upload (false once it is gone: 404 NoSuchUpload, or any error). */
async function uploadStillListed(
  target: UploadTarget,
  input: { Bucket: string; Key: string; UploadId: string },
): Promise<boolean> {
  try {
    await target.client.send(new ListPartsCommand(input));
    return true;
  } catch {
    return false;
  }
}

/** A PutObject/CompleteMultipartUpload answer without an ETag is not a confirmed, whole object. */
function confirmedEtag(etag: string | undefined, key: string): string {
  if (!etag) {
    throw new StorageError('STORAGE_INCOMPLETE_UPLOAD', `the store did not confirm ${key} with an etag`, {
      key,
    });
  }
  return etag;
}
