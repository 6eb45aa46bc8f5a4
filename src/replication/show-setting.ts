import type { ReplicationConnection } from '../connection/replication-connection';
import { parseWalSegmentSizeSetting } from '../lsn';
import { requiredText } from './command-result';
import { showCommand } from './show-command';
import { ProtocolError } from '../errors';

/**
 * Runs `SHOW name` on a replication connection and returns the setting's text (e.g. `16MB`).
 *
 * Errors: ConfigError CONFIG_INVALID_IDENTIFIER for a malformed name (nothing is sent);
 * PostgresServerError 42704 for an unknown setting.
 *
 * @example const mode = await showSetting(conn, 'data_directory_mode'); // '0700'
 */
export async function showSetting(conn: ReplicationConnection, name: string): Promise<string> {
  const cmd = showCommand(name);
  const results = (await conn.query(cmd)).filter((r) => r.fields.length > 0);
  const row = results[0]?.rows[0];
  if (results.length !== 1 || results[0]!.rows.length !== 1 || !row || row.length !== 1) {
    throw new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', `${cmd} did not return one value`);
  }
  return requiredText(row[0], cmd, name);
}

/**
 * The server's WAL segment size in bytes, from `SHOW wal_segment_size` (streamutil.c
 * RetrieveWalSegSize). Errors: ConfigError CONFIG_INVALID_SEGMENT_SIZE if the value is not a power
 * of two in [1 MiB, 1 GiB].
 *
 * @example const segmentSize = await getWalSegmentSize(conn); // 16777216
 */
export async function getWalSegmentSize(conn: ReplicationConnection): Promise<number> {
  return parseWalSegmentSizeSetting(await showSetting(conn, 'wal_segment_size'));
}
