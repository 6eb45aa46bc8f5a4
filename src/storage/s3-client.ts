/**
 * Builds the S3Client the s3 driver uses, with the settings that keep it working against stores
 * other than AWS (checked against OpenStack Swift 2.30 s3api, see docs/design-storage.md):
 * - checksums only when an operation requires them: with the SDK's default ("when supported") a
 *   PutObject with a stream body is sent aws-chunked, which Swift rejects with 501;
 * - our own retry loop (s3-retry.ts) instead of the SDK's, so that every retry is visible as a
 *   `storage.retry` event; the SDK client therefore makes exactly one attempt per call;
 * - DeleteObjects with a Content-MD5 header (s3-content-md5.ts), which Swift requires.
 */
import type { S3ClientConfig } from '@aws-sdk/client-s3';
// The SDK's client class, required on first use (start-up cost of every archive-push/fetch process: s3-sdk.ts).
import { S3Client } from './s3-sdk';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3ClientSettings {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: S3Credentials;
  checksumMode?: 'when-required' | 'when-supported';
  /** Attempts the SDK makes by itself; the driver passes 1 and retries on its own. @default 1 */
  sdkMaxAttempts?: number;
  /** Connect timeout. @default 10_000 */
  connectionTimeoutMs?: number;
  /** Socket inactivity timeout of a request. @default 120_000 */
  requestTimeoutMs?: number;
}

export function createS3Client(settings: S3ClientSettings): S3Client {
  const checksum = settings.checksumMode === 'when-supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
  const config: S3ClientConfig = {
    region: settings.region ?? 'us-east-1',
    forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
    requestChecksumCalculation: checksum,
    responseChecksumValidation: checksum,
    maxAttempts: settings.sdkMaxAttempts ?? 1,
    requestHandler: {
      connectionTimeout: settings.connectionTimeoutMs ?? 10_000,
      requestTimeout: settings.requestTimeoutMs ?? 120_000,
    },
  };
  if (settings.endpoint !== undefined) config.endpoint = settings.endpoint;
  if (settings.credentials !== undefined) config.credentials = { ...settings.credentials };
  return new S3Client(config);
}
