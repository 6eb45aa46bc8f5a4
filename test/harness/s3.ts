/**
 * Per-test buckets on the run's S3 server (started by global-setup.ts, reached with `inject('s3')`).
 *
 *   const b = await createTestBucket();
 *   const storage = createS3Storage(b.storageOptions);
 *   ... b.client (raw S3Client) for assertions ...
 *   await storage.close(); await b.cleanup();
 */
import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  AbortMultipartUploadCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { createS3Client } from '../../src/storage/s3-client';
import { withContentMd5 } from '../../src/storage/s3-content-md5';
import type { S3StorageOptions } from '../../src/storage/s3-storage';
import type { S3ServerInfo } from './s3-server';

export interface TestBucketOptions {
  /** Server to use. @default inject('s3') */
  server?: S3ServerInfo;
  /** Endpoint the storage options point at (for example a fault proxy); the raw client keeps the real one. */
  endpoint?: string;
  /** Key prefix put into storageOptions. */
  prefix?: string;
  /** Name stem for the bucket (a random suffix is added). @default 'pgark-test' */
  name?: string;
}

export interface TestBucket {
  bucket: string;
  /** Ready for createS3Storage (endpoint, region, path style, credentials, bucket, prefix). */
  storageOptions: S3StorageOptions;
  /** A raw client for assertions (not retrying, Content-MD5 middleware for DeleteObjects via deleteAll). */
  client: S3Client;
  /** Multipart uploads still open in the bucket (should be 0 after any put). */
  openUploads(): Promise<number>;
  /** Every key in the bucket (raw, prefix included). */
  listKeys(): Promise<string[]>;
  /** Empties and deletes the bucket, destroys the client. */
  cleanup(): Promise<void>;
}

export async function createTestBucket(opts: TestBucketOptions = {}): Promise<TestBucket> {
  const server = opts.server ?? inject('s3');
  const credentials = { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
  const client = createS3Client({
    endpoint: server.endpoint,
    region: server.region,
    credentials,
    sdkMaxAttempts: 3,
  });
  const bucket = `${opts.name ?? 'pgark-test'}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));

  const listKeys = async (): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  };
  const listUploads = async () =>
    (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];

  return {
    bucket,
    storageOptions: {
      bucket,
      prefix: opts.prefix,
      endpoint: opts.endpoint ?? server.endpoint,
      region: server.region,
      forcePathStyle: true,
      credentials,
    },
    client,
    openUploads: async () => (await listUploads()).length,
    listKeys,
    async cleanup() {
      try {
        for (const u of await listUploads()) {
          await client.send(
            new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
          );
        }
        let keys = await listKeys();
        while (keys.length > 0) {
          const batch = keys.splice(0, 1000);
          await client.send(
            withContentMd5(
              new DeleteObjectsCommand({
                Bucket: bucket,
                Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
              }),
            ),
          );
          if (keys.length === 0) keys = await listKeys();
        }
        await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      } finally {
        client.destroy();
      }
    },
  };
}
