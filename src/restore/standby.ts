/**
 * The primary's side of a standby built from a backup: its physical replication slot, created
 * before the standby starts (CREATE_REPLICATION_SLOT … PHYSICAL RESERVE_WAL, walsender.c) so that
 * the primary keeps the WAL the standby will ask for between the backup's end and its first
 * connection. The standby's own settings (standby.signal, primary_conninfo, primary_slot_name) are
 * written by restoreBackup through ./recovery-config.
 */
import {
  ReplicationConnection,
  type ReplicationConnectionOptions,
} from '../connection/replication-connection';
import { isPgarkError } from '../errors';
import { createReplicationSlot } from '../replication/replication-slots';

/**
 * Creates a physical slot that reserves WAL at once; an existing slot of that name is kept
 * (a second restore of the same standby reuses it).
 *
 * @returns whether the slot was created (false: it existed).
 * @throws ConfigError CONFIG_INVALID_SLOT_NAME; ConnectionError; PostgresServerError (e.g. 53400
 *   max_replication_slots reached).
 */
export async function createStandbySlot(
  connection: ReplicationConnectionOptions,
  slotName: string,
): Promise<boolean> {
  const conn = await ReplicationConnection.connect(connection);
  try {
    await createReplicationSlot(conn, { name: slotName, reserveWal: true });
    return true;
  } catch (e) {
    if (isPgarkError(e) && e.code === 'REPLICATION_SLOT_EXISTS') return false;
    throw e;
  } finally {
    await conn.close();
  }
}
