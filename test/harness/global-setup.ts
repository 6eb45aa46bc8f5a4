/**
 * vitest globalSetup of the `integration` project: starts one S3 server (Swift s3api) for the whole
 * run and provides its endpoint and credentials. Tests read them with `inject('s3')` and make their
 * own bucket with `createTestBucket()` (test/harness/s3.ts).
 */
import type { TestProject } from 'vitest/node';
import { startS3Server, type S3ServerInfo } from './s3-server';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3ServerInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startS3Server();
  project.provide('s3', {
    endpoint: server.endpoint,
    region: server.region,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
  });
  return async () => {
    await server.stop();
  };
}
