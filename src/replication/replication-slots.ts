/**
 * Physical replication slots: CREATE_REPLICATION_SLOT, DROP_REPLICATION_SLOT, READ_REPLICATION_SLOT
 * (walsender.c CreateReplicationSlot, DropReplicationSlot, ReadReplicationSlot).
 */
import type { ReplicationConnection } from '../connection/replication-connection';
import { ReplicationError } from '../errors';
import { parseLsn, type Lsn } from '../lsn';
import { mapServerErrors, requiredText, singleRow, text } from './command-result';
import {
  createReplicationSlotCommand,
  dropReplicationSlotCommand,
  readReplicationSlotCommand,
} from './slot-command';
import { assertSlotName } from './slot-name';

export interface CreateReplicationSlotOptions {
  /** 1..63 characters of a-z, 0-9, _ (ReplicationSlotValidateName). */
  name: string;
  /** Dropped when this connection ends or on error. @default false */
  temporary?: boolean;
  /**
   * Reserve WAL at once (from the last redo pointer). Without it the slot retains nothing until a
   * client reports a flush position. Create the slot with reserveWal before a BASE_BACKUP whose
   * WAL you need. @default false
   */
  reserveWal?: boolean;
}

export interface CreatedReplicationSlot {
  slotName: string;
  /** consistent_point as sent; `0/0` for a physical slot (it is printed from confirmed_flush). Use readReplicationSlot for restart_lsn. */
  consistentPoint: Lsn | null;
}

/**
 * Creates a physical replication slot (legacy syntax on PG14, option list on 15+).
 *
 * Errors: ConfigError CONFIG_INVALID_SLOT_NAME (nothing sent); ReplicationError
 * REPLICATION_SLOT_EXISTS (SQLSTATE 42710); PostgresServerError otherwise (e.g. 53400 when
 * max_replication_slots is reached).
 *
 * @example await createReplicationSlot(conn, { name: 'pgark_archiver', reserveWal: true });
 */
export async function createReplicationSlot(
  conn: ReplicationConnection,
  options: CreateReplicationSlotOptions,
): Promise<CreatedReplicationSlot> {
  const cmd = createReplicationSlotCommand(options, conn.serverVersionNum);
  const results = await mapServerErrors(
    () => conn.query(cmd),
    { '42710': 'REPLICATION_SLOT_EXISTS' },
    {
      slotName: options.name,
      what: `cannot create replication slot "${options.name}"`,
    },
  );
  const row = singleRow(results, 'CREATE_REPLICATION_SLOT', ['slot_name', 'consistent_point']);
  const cp = text(row.get('consistent_point'));
  return {
    slotName: requiredText(row.get('slot_name'), 'CREATE_REPLICATION_SLOT', 'slot_name'),
    consistentPoint: cp === null ? null : parseLsn(cp),
  };
}

export interface DropReplicationSlotOptions {
  /** Wait until the slot is released instead of failing when it is active. @default false */
  wait?: boolean;
}

/**
 * Drops a replication slot.
 *
 * Errors: ConfigError CONFIG_INVALID_SLOT_NAME (nothing sent); ReplicationError
 * REPLICATION_SLOT_NOT_FOUND (42704); REPLICATION_SLOT_IN_USE (55006, active and `wait` false).
 *
 * @example await dropReplicationSlot(conn, 'pgark_archiver');
 */
export async function dropReplicationSlot(
  conn: ReplicationConnection,
  name: string,
  options: DropReplicationSlotOptions = {},
): Promise<void> {
  const cmd = dropReplicationSlotCommand(name, options.wait ?? false);
  await mapServerErrors(
    () => conn.query(cmd),
    { '42704': 'REPLICATION_SLOT_NOT_FOUND', '55006': 'REPLICATION_SLOT_IN_USE' },
    { slotName: name, what: `cannot drop replication slot "${name}"` },
  );
}

export interface ReplicationSlotInfo {
  slotName: string;
  /** 'physical' (READ_REPLICATION_SLOT refuses logical slots). */
  slotType: string;
  /** NULL when the slot reserves no WAL yet (created without reserveWal and never used). */
  restartLsn: Lsn | null;
  /** The timeline of restartLsn, from the server's timeline history; null with restartLsn. */
  restartTimeline: number | null;
}

/**
 * Reads a physical slot's restart position with READ_REPLICATION_SLOT (PostgreSQL 15+).
 * Returns `undefined` when no slot has that name (the server answers with an all-NULL row rather
 * than an error; pgark keeps that distinction instead of throwing, so callers can decide).
 *
 * Errors: ConfigError CONFIG_INVALID_SLOT_NAME (nothing sent); ReplicationError
 * REPLICATION_UNSUPPORTED_VERSION on PostgreSQL 14 (nothing sent); PostgresServerError for a
 * logical slot (55000 "cannot use READ_REPLICATION_SLOT with a logical replication slot").
 *
 * @example
 * ```ts
 * const slot = await readReplicationSlot(conn, 'pgark_archiver');
 * if (slot?.restartLsn != null) console.log(formatLsn(slot.restartLsn), slot.restartTimeline);
 * ```
 */
export async function readReplicationSlot(
  conn: ReplicationConnection,
  name: string,
): Promise<ReplicationSlotInfo | undefined> {
  assertSlotName(name);
  if (conn.serverVersionNum < 150000) {
    throw new ReplicationError(
      'REPLICATION_UNSUPPORTED_VERSION',
      `READ_REPLICATION_SLOT needs postgresql 15 or newer; ${conn.target} runs ${conn.serverVersionNum}`,
      {
        slotName: name,
        hint: 'on postgresql 14, track the position yourself (e.g. from the archive) instead of reading the slot',
      },
    );
  }
  const cmd = readReplicationSlotCommand(name);
  const row = singleRow(await conn.query(cmd), 'READ_REPLICATION_SLOT', [
    'slot_type',
    'restart_lsn',
    'restart_tli',
  ]);
  const slotType = text(row.get('slot_type'));
  if (slotType === null) return undefined;
  const lsn = text(row.get('restart_lsn'));
  const tli = text(row.get('restart_tli'));
  return {
    slotName: name,
    slotType,
    restartLsn: lsn === null ? null : parseLsn(lsn),
    restartTimeline: tli === null ? null : Number(tli),
  };
}
