/**
 * The AWS SDK's S3 client, loaded on first use rather than when the library is imported.
 *
 * Why: importing @aws-sdk/client-s3 costs more than the rest of pgark together (about 0.2 s of CPU,
 * over a second of wall time on a loaded machine), and PostgreSQL starts `pgark archive-fetch` /
 * `archive-push` once per WAL file, most often against a directory repository that never needs it.
 * A static `import` of the SDK anywhere in the library makes every process pay (bundlers hoist
 * external imports to the top of the output), so the s3 driver imports the SDK's classes from here.
 *
 * Each export is a stand-in with the SDK class's exact type: `new GetObjectCommand(input)` requires
 * the SDK (synchronously, once) and returns the SDK's own instance, so `instanceof`, the client's
 * middleware and the user's own `S3Client` see the real classes. The SDK's package has no ESM entry
 * for Node ("main" only), so `require` and `import` yield the same module instance.
 */
import { createRequire } from 'node:module';

type S3Sdk = typeof import('@aws-sdk/client-s3');

// ESM build: import.meta.url; the CJS build: __filename.
// Not `typeof require`: an ESM bundle (esbuild, tsup) turns `require` into a shim that throws
// "Dynamic require ... is not supported"; createRequire works in both builds.
const requireModule: NodeRequire = createRequire((import.meta as { url?: string }).url ?? __filename);

let sdk: S3Sdk | undefined;

/** The SDK module, required on the first call. */
export function loadS3Sdk(): S3Sdk {
  sdk ??= requireModule('@aws-sdk/client-s3') as S3Sdk;
  return sdk;
}

/** A constructor that builds the SDK's class `name` (and forwards static members to it). */
function lazyClass<K extends keyof S3Sdk>(name: K): S3Sdk[K] {
  const real = (): object => loadS3Sdk()[name] as object;
  return new Proxy(function lazySdkClass() {}, {
    construct: (_target, args) => Reflect.construct(real() as new (...a: unknown[]) => object, args),
    get: (_target, prop) => Reflect.get(real(), prop),
    getPrototypeOf: () => Reflect.getPrototypeOf(real()),
  }) as unknown as S3Sdk[K];
}

// Each name is also the SDK's instance type, as with the SDK's own class exports.
export const S3Client = lazyClass('S3Client');
export type S3Client = import('@aws-sdk/client-s3').S3Client;
export const GetObjectCommand = lazyClass('GetObjectCommand');
export type GetObjectCommand = import('@aws-sdk/client-s3').GetObjectCommand;
export const HeadObjectCommand = lazyClass('HeadObjectCommand');
export type HeadObjectCommand = import('@aws-sdk/client-s3').HeadObjectCommand;
export const ListObjectsV2Command = lazyClass('ListObjectsV2Command');
export type ListObjectsV2Command = import('@aws-sdk/client-s3').ListObjectsV2Command;
export const DeleteObjectsCommand = lazyClass('DeleteObjectsCommand');
export type DeleteObjectsCommand = import('@aws-sdk/client-s3').DeleteObjectsCommand;
export const PutObjectCommand = lazyClass('PutObjectCommand');
export type PutObjectCommand = import('@aws-sdk/client-s3').PutObjectCommand;
export const CreateMultipartUploadCommand = lazyClass('CreateMultipartUploadCommand');
export type CreateMultipartUploadCommand = import('@aws-sdk/client-s3').CreateMultipartUploadCommand;
export const UploadPartCommand = lazyClass('UploadPartCommand');
export type UploadPartCommand = import('@aws-sdk/client-s3').UploadPartCommand;
export const CompleteMultipartUploadCommand = lazyClass('CompleteMultipartUploadCommand');
export type CompleteMultipartUploadCommand = import('@aws-sdk/client-s3').CompleteMultipartUploadCommand;
export const AbortMultipartUploadCommand = lazyClass('AbortMultipartUploadCommand');
export type AbortMultipartUploadCommand = import('@aws-sdk/client-s3').AbortMultipartUploadCommand;
export const ListPartsCommand = lazyClass('ListPartsCommand');
export type ListPartsCommand = import('@aws-sdk/client-s3').ListPartsCommand;
