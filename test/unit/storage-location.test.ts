import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { openStorage, parseStorageLocation } from '../../src/storage/location';

describe('parseStorageLocation', () => {
  it('parses s3 urls', () => {
    expect(parseStorageLocation('s3://backups')).toEqual({ kind: 's3', bucket: 'backups', prefix: '' });
    expect(parseStorageLocation('s3://backups/')).toEqual({ kind: 's3', bucket: 'backups', prefix: '' });
    expect(parseStorageLocation('s3://backups/prod/db1/')).toEqual({
      kind: 's3',
      bucket: 'backups',
      prefix: 'prod/db1',
    });
  });
  it('parses directory paths and file urls', () => {
    expect(parseStorageLocation('/var/lib/pgark')).toEqual({ kind: 'fs', root: '/var/lib/pgark' });
    expect(parseStorageLocation('/var/lib/pgark/')).toEqual({ kind: 'fs', root: '/var/lib/pgark' });
    expect(parseStorageLocation('repo')).toEqual({ kind: 'fs', root: resolve('repo') });
    expect(parseStorageLocation('file:///mnt/backup%20disk')).toEqual({
      kind: 'fs',
      root: '/mnt/backup disk',
    });
  });
  it('refuses everything else with CONFIG_INVALID_LOCATION', () => {
    for (const bad of [
      '',
      '   ',
      's3://',
      's3:///prefix',
      's3://b/a//c',
      's3://b/../x',
      'gs://bucket/x',
      'file://relative',
      'a\0b',
    ]) {
      let err: unknown;
      try {
        parseStorageLocation(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('CONFIG_INVALID_LOCATION');
    }
  });
});

describe('openStorage', () => {
  it('builds the driver of the location', async () => {
    const fs = openStorage('/tmp/pgark-unit-location');
    expect(fs.kind).toBe('fs');
    expect(fs.describe()).toBe('/tmp/pgark-unit-location');
    const s3 = openStorage('s3://bucket/prefix', {
      endpoint: 'http://127.0.0.1:1',
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' },
    });
    expect(s3.kind).toBe('s3');
    expect(s3.describe()).toContain('s3://bucket/prefix');
    expect(s3.describe()).not.toContain('very-secret');
    await s3.close();
    await fs.close();
  });
});
