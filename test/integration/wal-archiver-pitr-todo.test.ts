/**
 * TODO(pitr-across-switch): restore a base backup of the primary (runBaseBackup) with
 * restore_command = `pgark archive-fetch %f %p` over the stanza the standby's archiver filled, with
 * recovery_target_timeline = 'latest', and check that recovery reaches timeline 2 and the rows
 * written after the promotion. Also: synchronous mode, restore from the repository only (source
 * cluster thrown away) and count the acknowledged rows. Both need the full restore path with
 * recovery settings (restoreBackup is minimal so far) and archive-fetch's reading of the partial
 * chunks of the newest segment (readArchivedPartial); not wired up yet.
 */
import { describe, it } from 'vitest';

describe('wal archiver + restore across a timeline switch', () => {
  it.todo('PITR from a base backup through the archived WAL reaches timeline 2 after a promotion');
  it.todo('synchronous mode: every acknowledged commit is present after restoring from the repository only');
});
