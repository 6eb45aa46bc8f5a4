import { describe, expect, it } from 'vitest';
import {
  assertStanzaName,
  backupArchiveKey,
  backupArchiveName,
  backupManifestKey,
  backupPrefix,
  backupWalKey,
  catalogEntryKey,
  catalogPrefix,
  isValidBackupId,
  makeBackupId,
  parseBackupId,
  parseRepositoryKey,
  REPOSITORY_FORMAT_KEY,
  stanzaInfoKey,
  walBackupHistoryKey,
  walHistoryKey,
  walPartialChunkKey,
  walPartialKey,
  walSegmentKey,
  walTimelinePrefix,
} from '../../src/archive/repo-layout';
import { canonicalJson } from '../../src/archive/repository';
import { ConfigError } from '../../src/errors';

const SEG = '000000010000000A000000FF';
const SEG2 = '0000000200000000000000A1';
const ID = '20261124T231500Z-F';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('repo-layout key builders', () => {
  it('builds the documented keys', () => {
    expect(REPOSITORY_FORMAT_KEY).toBe('pgark.json');
    expect(stanzaInfoKey('main')).toBe('stanzas/main/stanza.json');
    expect(catalogPrefix('main')).toBe('stanzas/main/catalog/');
    expect(catalogEntryKey('main', ID)).toBe(`stanzas/main/catalog/${ID}.json`);
    expect(backupPrefix('main', ID)).toBe(`stanzas/main/backups/${ID}/`);
    expect(backupArchiveKey('main', ID, 'base.tar.zst')).toBe(`stanzas/main/backups/${ID}/base.tar.zst`);
    expect(backupArchiveKey('main', ID, backupArchiveName(16385, 'gz'))).toBe(
      `stanzas/main/backups/${ID}/16385.tar.gz`,
    );
    expect(backupArchiveName('base')).toBe('base.tar');
    expect(backupManifestKey('main', ID)).toBe(`stanzas/main/backups/${ID}/backup_manifest`);
    expect(backupWalKey('main', ID, SEG)).toBe(`stanzas/main/backups/${ID}/wal/${SEG}`);
    expect(backupWalKey('main', ID, '00000002.history')).toBe(
      `stanzas/main/backups/${ID}/wal/00000002.history`,
    );
    expect(walTimelinePrefix('main', 1)).toBe('stanzas/main/wal/00000001/');
    expect(walSegmentKey('main', SEG)).toBe(`stanzas/main/wal/00000001/${SEG}`);
    expect(walSegmentKey('main', SEG2, 'zst')).toBe(`stanzas/main/wal/00000002/${SEG2}.zst`);
    expect(walPartialKey('main', SEG)).toBe(`stanzas/main/wal/00000001/${SEG}.partial`);
    expect(walPartialChunkKey('main', SEG, 26)).toBe(`stanzas/main/wal/00000001/${SEG}.partial.0000001a`);
    expect(walHistoryKey('main', 10)).toBe('stanzas/main/wal/history/0000000A.history');
    expect(walBackupHistoryKey('main', `${SEG}.00000028.backup`)).toBe(
      `stanzas/main/wal/00000001/${SEG}.00000028.backup`,
    );
  });

  it('rejects bad names', () => {
    for (const bad of ['', '.', '..', 'a/b', 'x'.repeat(65), 'sp ace', 'é']) {
      expect(codeOf(() => assertStanzaName(bad))).toBe('CONFIG_INVALID_IDENTIFIER');
    }
    expect(() => assertStanzaName('prod-db_1.x')).not.toThrow();
    expect(codeOf(() => walSegmentKey('main', '00000001000000000000000g'))).toBe('CONFIG_INVALID_WAL_NAME');
    expect(codeOf(() => backupArchiveKey('main', ID, '../x.tar'))).toBe('CONFIG_INVALID_IDENTIFIER');
    expect(codeOf(() => backupArchiveKey('main', ID, 'base.tar.bz2'))).toBe('CONFIG_INVALID_IDENTIFIER');
    expect(codeOf(() => catalogEntryKey('main', '20261124T231500Z'))).toBe('CONFIG_INVALID_IDENTIFIER');
    expect(codeOf(() => walHistoryKey('main', 0))).toBe('CONFIG_INVALID_OPTION');
    expect(codeOf(() => walPartialChunkKey('main', SEG, -1))).toBe('CONFIG_INVALID_OPTION');
    expect(() => assertStanzaName('')).toThrow(ConfigError);
  });
});

describe('backup ids', () => {
  it('sort by time and round-trip', () => {
    const a = makeBackupId(new Date('2026-11-24T23:15:00.999Z'), 'full');
    const b = makeBackupId(new Date('2026-11-25T00:00:01Z'), 'incremental');
    expect(a).toBe('20261124T231500Z-F');
    expect(b).toBe('20261125T000001Z-I');
    expect([b, a].sort()).toEqual([a, b]);
    expect(parseBackupId(b)).toEqual({ startedAt: new Date('2026-11-25T00:00:01Z'), kind: 'incremental' });
  });
  it('rejects impossible dates and other shapes', () => {
    expect(isValidBackupId('20261324T231500Z-F')).toBe(false);
    expect(isValidBackupId('20261131T231500Z-F')).toBe(false);
    expect(isValidBackupId('20261124T231500Z-X')).toBe(false);
    expect(isValidBackupId('20261124T231500Z-F ')).toBe(false);
    expect(isValidBackupId(ID)).toBe(true);
  });
});

describe('parseRepositoryKey', () => {
  it('inverts every builder', () => {
    expect(parseRepositoryKey('pgark.json')).toEqual({ kind: 'repository-format' });
    expect(parseRepositoryKey(stanzaInfoKey('s1'))).toEqual({ kind: 'stanza-info', stanza: 's1' });
    expect(parseRepositoryKey(catalogEntryKey('s1', ID))).toEqual({
      kind: 'catalog-entry',
      stanza: 's1',
      backupId: ID,
    });
    expect(parseRepositoryKey(backupArchiveKey('s1', ID, 'base.tar'))).toEqual({
      kind: 'backup-archive',
      stanza: 's1',
      backupId: ID,
      archiveName: 'base.tar',
      tablespace: 'base',
    });
    expect(parseRepositoryKey(backupArchiveKey('s1', ID, '16385.tar.lz4'))).toEqual({
      kind: 'backup-archive',
      stanza: 's1',
      backupId: ID,
      archiveName: '16385.tar.lz4',
      tablespace: 16385,
      compression: 'lz4',
    });
    expect(parseRepositoryKey(backupManifestKey('s1', ID))).toEqual({
      kind: 'backup-manifest',
      stanza: 's1',
      backupId: ID,
    });
    expect(parseRepositoryKey(backupWalKey('s1', ID, SEG))).toEqual({
      kind: 'backup-wal',
      stanza: 's1',
      backupId: ID,
      walName: SEG,
    });
    expect(parseRepositoryKey(walSegmentKey('s1', SEG))).toEqual({
      kind: 'wal-segment',
      stanza: 's1',
      timeline: 1,
      walName: SEG,
    });
    expect(parseRepositoryKey(walSegmentKey('s1', SEG2, 'gz'))).toEqual({
      kind: 'wal-segment',
      stanza: 's1',
      timeline: 2,
      walName: SEG2,
      compression: 'gz',
    });
    expect(parseRepositoryKey(walPartialKey('s1', SEG))).toEqual({
      kind: 'wal-partial',
      stanza: 's1',
      timeline: 1,
      walName: SEG,
    });
    expect(parseRepositoryKey(walPartialChunkKey('s1', SEG, 300))).toEqual({
      kind: 'wal-partial-chunk',
      stanza: 's1',
      timeline: 1,
      walName: SEG,
      seq: 300,
    });
    expect(parseRepositoryKey(walHistoryKey('s1', 3))).toEqual({
      kind: 'wal-history',
      stanza: 's1',
      timeline: 3,
    });
    expect(parseRepositoryKey(walBackupHistoryKey('s1', `${SEG}.00000028.backup`))).toEqual({
      kind: 'wal-backup-history',
      stanza: 's1',
      timeline: 1,
      fileName: `${SEG}.00000028.backup`,
    });
  });

  it('returns undefined for foreign keys', () => {
    for (const key of [
      'other.json',
      'stanzas/s1',
      'stanzas/s1/unknown.json',
      'stanzas/bad name/stanza.json',
      `stanzas/s1/catalog/${ID}.txt`,
      'stanzas/s1/catalog/notanid.json',
      `stanzas/s1/backups/${ID}/base.tar.bz2`,
      `stanzas/s1/backups/${ID}/wal/junk`,
      `stanzas/s1/backups/${ID}/a/b/c`,
      `stanzas/s1/wal/00000002/${SEG}`, // timeline directory differs from the name
      'stanzas/s1/wal/00000001/junk',
      'stanzas/s1/wal/history/junk.history',
      `stanzas/s1/wal/00000001/${SEG}/x`,
    ]) {
      expect(parseRepositoryKey(key), key).toBeUndefined();
    }
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[{"y":2,"z":1}]},"b":1}\n',
    );
    expect(canonicalJson({ n: 5n })).toBe('{"n":"5"}\n');
  });
});
