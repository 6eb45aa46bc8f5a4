import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/errors';
import { parseBackupLabel } from '../../src/archive/backup-label';

/** The backup_label member (first in the archive) of a real base.tar, read with a minimal ustar reader. */
function firstMember(tarPath: string): Buffer {
  const tar = readFileSync(tarPath);
  expect(tar.subarray(0, 12).toString()).toBe('backup_label');
  const size = parseInt(tar.subarray(124, 135).toString(), 8);
  return tar.subarray(512, 512 + size);
}
const FIX = join(__dirname, '../fixtures/backup');

describe('parseBackupLabel', () => {
  it.each(['pg14', 'pg17'])('parses the real backup_label of %s', (dir) => {
    const label = parseBackupLabel(firstMember(join(FIX, dir, 'base-trimmed.tar')));
    expect(label.startLsn).toBeGreaterThan(0n);
    expect(typeof label.startLsn).toBe('bigint');
    expect(label.checkpointLsn).toBeGreaterThanOrEqual(label.startLsn);
    expect(label.startWalFile).toMatch(/^00000001[0-9A-F]{16}$/);
    expect(label.backupMethod).toBe('streamed');
    expect(label.backupFrom).toBe('primary');
    expect(label.startTimeline).toBe(1);
    expect(label.startTimeText).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /);
    expect(label.incrementalFromLsn).toBeUndefined();
  });

  it('parses the PG17 incremental lines, a standby source and a label containing ": "', () => {
    const text = [
      'START WAL LOCATION: 1/A000028 (file 00000002000000010000000A)',
      'CHECKPOINT LOCATION: 1/A000080',
      'BACKUP METHOD: streamed',
      'BACKUP FROM: standby',
      'START TIME: 2025-01-01 00:00:00 UTC',
      'LABEL: nightly: full',
      'START TIMELINE: 2',
      'INCREMENTAL FROM LSN: 1/5000028',
      'INCREMENTAL FROM TLI: 2',
      '',
    ].join('\n');
    const l = parseBackupLabel(text);
    expect(l).toEqual({
      startLsn: 0x10a000028n,
      startWalFile: '00000002000000010000000A',
      checkpointLsn: 0x10a000080n,
      backupMethod: 'streamed',
      backupFrom: 'standby',
      startTimeText: '2025-01-01 00:00:00 UTC',
      label: 'nightly: full',
      startTimeline: 2,
      incrementalFromLsn: 0x105000028n,
      incrementalFromTimeline: 2,
    });
  });

  it('rejects missing or malformed required lines', () => {
    const good = firstMember(join(FIX, 'pg17/base-trimmed.tar')).toString();
    const cases = [
      good.replace(/START WAL LOCATION.*\n/, ''),
      good.replace(/CHECKPOINT LOCATION: \S+/, 'CHECKPOINT LOCATION: zz'),
      good.replace(/BACKUP FROM: \w+/, 'BACKUP FROM: elsewhere'),
      good.replace(/\(file [0-9A-F]+\)/, '(file nope)'),
      good.replace(/START TIMELINE: \d+/, 'START TIMELINE: -1'),
      good + 'INCREMENTAL FROM LSN: 0/1\n',
    ];
    for (const c of cases) {
      expect(() => parseBackupLabel(c)).toThrow(IntegrityError);
      try {
        parseBackupLabel(c);
      } catch (e) {
        expect((e as IntegrityError).code).toBe('INTEGRITY_ARCHIVE_INVALID');
      }
    }
  });
});
