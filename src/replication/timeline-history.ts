import type { ReplicationConnection } from '../connection/replication-connection';
import { requiredText, singleRow } from './command-result';
import { timelineHistoryCommand } from './timeline-history-command';
import { ProtocolError } from '../errors';

export interface TimelineHistoryFile {
  /** e.g. `00000002.history`. */
  fileName: string;
  /** The history file's bytes, verbatim (walsender.c SendTimeLineHistory applies no escaping). */
  content: Buffer;
}

/**
 * Runs TIMELINE_HISTORY tli: the server's `<tli>.history` file. Timeline 1 has no history file.
 *
 * Errors: ConfigError CONFIG_INVALID_OPTION for tli < 1 (nothing is sent); PostgresServerError
 * (58P01) when the server has no such file.
 *
 * @example
 * ```ts
 * const { fileName, content } = await timelineHistory(conn, 2);
 * const entries = parseTimelineHistory(content);
 * ```
 */
export async function timelineHistory(
  conn: ReplicationConnection,
  timeline: number,
): Promise<TimelineHistoryFile> {
  const cmd = timelineHistoryCommand(timeline);
  const row = singleRow(await conn.query(cmd), cmd, ['filename', 'content']);
  const content = row.get('content');
  if (!content) throw new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', `${cmd} returned NULL content`);
  // Copy: the value is a view of a received socket chunk; the caller may keep it for long.
  return { fileName: requiredText(row.get('filename'), cmd, 'filename'), content: Buffer.from(content) };
}
