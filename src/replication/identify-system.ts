import type { ReplicationConnection } from '../connection/replication-connection';
import { parseLsn, type Lsn } from '../lsn';
import { requiredText, singleRow, text } from './command-result';

export interface SystemIdentification {
  /** The cluster's system identifier (uint64 in decimal; kept as a string because it exceeds 2^53). */
  systemIdentifier: string;
  /** The server's current timeline (on a standby: the one it replays). */
  timeline: number;
  /** The flush position (GetFlushRecPtr; on a standby GetStandbyFlushRecPtr). */
  xlogPos: Lsn;
  /** NULL on a physical replication connection. */
  dbName: string | null;
}

/**
 * Runs IDENTIFY_SYSTEM (walsender.c IdentifySystem): the cluster's identity and the WAL flush position.
 *
 * Errors: ConnectionError on a lost connection; PostgresServerError for a server error;
 * ProtocolError PROTOCOL_UNEXPECTED_MESSAGE if the result is not one row.
 *
 * @example
 * ```ts
 * const { systemIdentifier, timeline, xlogPos } = await identifySystem(conn);
 * console.log(systemIdentifier, timeline, formatLsn(xlogPos));
 * ```
 */
export async function identifySystem(conn: ReplicationConnection): Promise<SystemIdentification> {
  const cmd = 'IDENTIFY_SYSTEM';
  const row = singleRow(await conn.query(cmd), cmd, ['systemid', 'timeline', 'xlogpos', 'dbname']);
  const systemIdentifier = requiredText(row.get('systemid'), cmd, 'systemid');
  const timeline = Number(requiredText(row.get('timeline'), cmd, 'timeline'));
  return {
    systemIdentifier,
    timeline,
    xlogPos: parseLsn(requiredText(row.get('xlogpos'), cmd, 'xlogpos')),
    dbName: text(row.get('dbname')),
  };
}
