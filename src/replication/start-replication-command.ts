/**
 * Builds the text of `START_REPLICATION [SLOT "name"] PHYSICAL X/X [TIMELINE n]` (repl_gram.y
 * `start_replication`). Identifiers are validated and quoted, never interpolated unchecked.
 */
import { ConfigError } from '../errors';
import { assertTimeline, formatLsn, type Lsn } from '../lsn';
import { quoteSlotName } from './slot-name';

export interface StartReplicationCommandOptions {
  startLsn: Lsn;
  timeline: number;
  slot?: string;
}

/**
 * `START_REPLICATION SLOT "s" PHYSICAL 0/3000000 TIMELINE 1`. The slot name is validated (so the
 * double quotes cannot be escaped) and the LSN is printed as `%X/%X`.
 */
export function buildStartReplicationCommand(o: StartReplicationCommandOptions): string {
  assertTimeline(o.timeline);
  if (typeof o.startLsn !== 'bigint' || o.startLsn < 0n || o.startLsn > 0xffffffffffffffffn) {
    throw new ConfigError('CONFIG_INVALID_LSN', `invalid start lsn ${String(o.startLsn)}`);
  }
  let sql = 'START_REPLICATION';
  if (o.slot !== undefined) {
    sql += ` SLOT ${quoteSlotName(o.slot)}`;
  }
  sql += ` PHYSICAL ${formatLsn(o.startLsn)} TIMELINE ${o.timeline}`;
  return sql;
}
