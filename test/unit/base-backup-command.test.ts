import { describe, expect, it } from 'vitest';
import {
  buildBaseBackupCommand,
  type BaseBackupCommandOptions,
} from '../../src/replication/base-backup-command';

const base: BaseBackupCommandOptions = {
  label: "it's a test",
  progress: true,
  checkpoint: 'fast',
  wal: false,
  wait: false,
  tablespaceMap: true,
  verifyChecksums: true,
  manifestChecksums: 'CRC32C',
};

describe('buildBaseBackupCommand', () => {
  it('uses the legacy grammar on 14 with the manifest requested', () => {
    expect(
      buildBaseBackupCommand({ ...base, maxRateKbps: 1024, verifyChecksums: false, wal: true }, 140023),
    ).toBe(
      "BASE_BACKUP LABEL 'it''s a test' PROGRESS FAST WAL NOWAIT MAX_RATE 1024 TABLESPACE_MAP NOVERIFY_CHECKSUMS MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'",
    );
  });
  it('uses the option list on 15+', () => {
    expect(
      buildBaseBackupCommand({ ...base, compression: { method: 'zstd', level: 3, workers: 2 } }, 150018),
    ).toBe(
      "BASE_BACKUP (LABEL 'it''s a test', PROGRESS, CHECKPOINT 'fast', WAIT 0, TABLESPACE_MAP, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client', COMPRESSION 'zstd', COMPRESSION_DETAIL 'level=3,workers=2')",
    );
  });
  it('refuses server compression on 14, bad rates, levels and labels', () => {
    expect(() => buildBaseBackupCommand({ ...base, compression: { method: 'gzip' } }, 140000)).toThrow(
      expect.objectContaining({ code: 'REPLICATION_UNSUPPORTED_VERSION' }),
    );
    expect(() => buildBaseBackupCommand({ ...base, maxRateKbps: 10 }, 160000)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID_OPTION' }),
    );
    expect(() =>
      buildBaseBackupCommand({ ...base, compression: { method: 'gzip', level: 12 } }, 160000),
    ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID_OPTION' }));
    expect(() =>
      buildBaseBackupCommand({ ...base, compression: { method: 'gzip', workers: 2 } }, 160000),
    ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID_OPTION' }));
    expect(() => buildBaseBackupCommand({ ...base, label: 'a\nb' }, 160000)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID_IDENTIFIER' }),
    );
    expect(() => buildBaseBackupCommand({ ...base, manifestChecksums: 'MD5' as 'NONE' }, 160000)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID_OPTION' }),
    );
  });
});
