/**
 * backup_label: the first member of every base.tar, which tells recovery where to start. Pure parser.
 *
 * Format from src/backend/access/transam/xlogbackup.c build_backup_content (one `KEY: value` line each, LSNs as
 * `%X/%X`); read back by xlogrecovery.c read_backup_label, whose tolerance we follow: lines we do not know are
 * ignored, the first four fields are required.
 */
import { IntegrityError } from '../errors';
import { isLsn, parseLsn, type Lsn } from '../lsn';

export interface BackupLabel {
  /** START WAL LOCATION: where recovery begins (the backup's redo pointer). */
  startLsn: Lsn;
  /** The segment file named in `(file ...)` on the START WAL LOCATION line. */
  startWalFile: string;
  /** CHECKPOINT LOCATION. */
  checkpointLsn: Lsn;
  /** BACKUP METHOD: `streamed` for BASE_BACKUP (`pg_start_backup` for the old exclusive API). */
  backupMethod: string;
  /** BACKUP FROM. */
  backupFrom: 'primary' | 'standby';
  /** START TIME as written, in the server's log_timezone (`%Y-%m-%d %H:%M:%S %Z`). */
  startTimeText?: string;
  /** LABEL (free text, may be empty). */
  label?: string;
  /** START TIMELINE (PG11+). */
  startTimeline?: number;
  /** INCREMENTAL FROM LSN (PG17+ incremental backups only). */
  incrementalFromLsn?: Lsn;
  /** INCREMENTAL FROM TLI (PG17+ incremental backups only). */
  incrementalFromTimeline?: number;
}

function invalid(message: string, cause?: unknown): IntegrityError {
  return new IntegrityError('INTEGRITY_ARCHIVE_INVALID', message, {
    key: 'backup_label',
    hint: 'the backup_label member of base.tar is damaged; the backup cannot be restored safely',
    cause,
  });
}

function lsnField(value: string, key: string): Lsn {
  if (!isLsn(value)) throw invalid(`backup_label ${key.toLowerCase()} "${value}" is not an lsn`);
  return parseLsn(value);
}

function uintField(value: string, key: string): number {
  if (!/^\d{1,10}$/.test(value) || Number(value) > 0xffffffff)
    throw invalid(`backup_label ${key.toLowerCase()} "${value}" is not a number`);
  return Number(value);
}

/**
 * Parses the text of a backup_label file.
 *
 * @throws IntegrityError `INTEGRITY_ARCHIVE_INVALID` when a required line (START WAL LOCATION, CHECKPOINT
 *   LOCATION, BACKUP METHOD, BACKUP FROM) is missing or any known field is malformed.
 * @example parseBackupLabel(buf).startLsn // 0x2000028n
 */
export function parseBackupLabel(content: string | Buffer): BackupLabel {
  const text = typeof content === 'string' ? content : content.toString('utf8');
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(': ');
    if (i <= 0) continue;
    const key = line.slice(0, i);
    // LABEL is free text and may itself contain ': '; the first occurrence of a key wins, as in read_backup_label.
    if (!fields.has(key)) fields.set(key, line.slice(i + 2).replace(/\r$/, ''));
  }

  const start = fields.get('START WAL LOCATION');
  if (start === undefined) throw invalid('backup_label has no START WAL LOCATION line');
  const m = /^([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}) \(file ([0-9A-F]{24})\)$/.exec(start);
  if (!m) throw invalid(`backup_label start wal location "${start}" is malformed`);
  const checkpoint = fields.get('CHECKPOINT LOCATION');
  if (checkpoint === undefined) throw invalid('backup_label has no CHECKPOINT LOCATION line');
  const method = fields.get('BACKUP METHOD');
  if (method === undefined) throw invalid('backup_label has no BACKUP METHOD line');
  const from = fields.get('BACKUP FROM');
  if (from !== 'primary' && from !== 'standby')
    throw invalid(`backup_label backup from "${from ?? ''}" is not primary or standby`);

  const label: BackupLabel = {
    startLsn: lsnField(m[1]!, 'START WAL LOCATION'),
    startWalFile: m[2]!,
    checkpointLsn: lsnField(checkpoint, 'CHECKPOINT LOCATION'),
    backupMethod: method,
    backupFrom: from,
  };
  const startTime = fields.get('START TIME');
  if (startTime !== undefined) label.startTimeText = startTime;
  const text2 = fields.get('LABEL');
  if (text2 !== undefined) label.label = text2;
  const tli = fields.get('START TIMELINE');
  if (tli !== undefined) label.startTimeline = uintField(tli, 'START TIMELINE');
  const incLsn = fields.get('INCREMENTAL FROM LSN');
  const incTli = fields.get('INCREMENTAL FROM TLI');
  if ((incLsn === undefined) !== (incTli === undefined)) {
    throw invalid('backup_label has only one of INCREMENTAL FROM LSN and INCREMENTAL FROM TLI');
  }
  if (incLsn !== undefined) label.incrementalFromLsn = lsnField(incLsn, 'INCREMENTAL FROM LSN');
  if (incTli !== undefined) label.incrementalFromTimeline = uintField(incTli, 'INCREMENTAL FROM TLI');
  return label;
}
