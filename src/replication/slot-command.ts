/**
 * Text of the slot commands (repl_gram.y). Every value is validated before it is interpolated.
 */
import { quoteSlotName } from './slot-name';

export interface CreatePhysicalSlotCommandOptions {
  name: string;
  temporary?: boolean;
  reserveWal?: boolean;
}

/**
 * CREATE_REPLICATION_SLOT for a physical slot. PG14 only has the legacy keyword form
 * (`PHYSICAL RESERVE_WAL`); 15+ take the parenthesised option list (streamutil.c
 * CreateReplicationSlot: `use_new_option_syntax = version >= 150000`). An empty `()` is invalid,
 * so no list is sent without options.
 */
export function createReplicationSlotCommand(
  o: CreatePhysicalSlotCommandOptions,
  serverVersionNum: number,
): string {
  let sql = `CREATE_REPLICATION_SLOT ${quoteSlotName(o.name)}${o.temporary ? ' TEMPORARY' : ''} PHYSICAL`;
  if (o.reserveWal) sql += serverVersionNum >= 150000 ? ' (RESERVE_WAL)' : ' RESERVE_WAL';
  return sql;
}

/** DROP_REPLICATION_SLOT "name" [WAIT]. */
export function dropReplicationSlotCommand(name: string, wait = false): string {
  return `DROP_REPLICATION_SLOT ${quoteSlotName(name)}${wait ? ' WAIT' : ''}`;
}

/** READ_REPLICATION_SLOT "name" (15+). */
export function readReplicationSlotCommand(name: string): string {
  return `READ_REPLICATION_SLOT ${quoteSlotName(name)}`;
}
