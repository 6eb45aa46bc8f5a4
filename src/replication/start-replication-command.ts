/**
 * Builds the text of `START_REPLICATION [SLOT "name"] PHYSICAL X/X [TIMELINE n]` (repl_gram.y
 * `start_replication`). Identifiers are validated and quoted, never interpolated unchecked.
 */
import { ConfigError } from '../errors';
import { assertTimeline, formatLsn, type Lsn } from '../lsn';

/** PostgreSQL's rule for slot names (slot.c ReplicationSlotValidateName): a-z, 0-9, _; 1..63 bytes. */
const SLOT_NAME_RE = /^[a-z0-9_]{1,63}$/;

/** Throws ConfigError CONFIG_INVALID_SLOT_NAME for a name the server would refuse. */
export function assertPhysicalSlotName(name: string): void {
  if (typeof name !== 'string' || !SLOT_NAME_RE.test(name)) {
    throw new ConfigError('CONFIG_INVALID_SLOT_NAME', `invalid replication slot name ${JSON.stringify(name)}`, {
      hint: 'slot names use only lower-case letters, digits and underscores, at most 63 characters',
    });
  }
}

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
    assertPhysicalSlotName(o.slot);
    sql += ` SLOT "${o.slot}"`;
  }
  sql += ` PHYSICAL ${formatLsn(o.startLsn)} TIMELINE ${o.timeline}`;
  return sql;
}
