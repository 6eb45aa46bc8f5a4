/**
 * Adds a Content-MD5 header to a DeleteObjects request. S3 requires an integrity header on
 * DeleteObjects; the SDK sends a CRC32 (or nothing with checksums "when required"), but Swift's
 * s3api insists on Content-MD5 (400 "Missing required header for this request: Content-MD5").
 * Added per command, so an injected client is not modified.
 */
import { createHash } from 'node:crypto';
import type { DeleteObjectsCommand } from '@aws-sdk/client-s3';

interface BuildArgs {
  request?: { body?: unknown; headers?: Record<string, string> };
}

export function withContentMd5(command: DeleteObjectsCommand): DeleteObjectsCommand {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = (args as BuildArgs).request;
      const body = request?.body;
      if (request?.headers && (typeof body === 'string' || body instanceof Uint8Array)) {
        request.headers['content-md5'] = createHash('md5').update(body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'pgarkContentMd5', override: true },
  );
  return command;
}
