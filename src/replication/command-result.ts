/**
 * Shared checks on the results of small replication commands: the expected one row, column
 * lookup by name, text decoding, and mapping of SQLSTATEs onto ReplicationError codes.
 */
import { PostgresServerError, ProtocolError, ReplicationError, type CodeOf } from '../errors';
import type { QueryResult } from '../connection/replication-connection';

/** The only row of the only result set, as a name → value map; PROTOCOL_UNEXPECTED_MESSAGE otherwise. */
export function singleRow(
  results: QueryResult[],
  command: string,
  columns: readonly string[],
): Map<string, Buffer | null> {
  const withRows = results.filter((r) => r.fields.length > 0);
  const res = withRows[0];
  if (withRows.length !== 1 || !res || res.rows.length !== 1) {
    throw new ProtocolError(
      'PROTOCOL_UNEXPECTED_MESSAGE',
      `${command} returned ${withRows.length} result sets / ${res?.rows.length ?? 0} rows, expected 1 row`,
    );
  }
  const row = res.rows[0]!;
  const out = new Map<string, Buffer | null>();
  for (const col of columns) {
    const i = res.fields.indexOf(col);
    if (i < 0)
      throw new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', `${command} result lacks column ${col}`);
    out.set(col, row[i] ?? null);
  }
  return out;
}

export function text(v: Buffer | null | undefined): string | null {
  return v == null ? null : v.toString('utf8');
}

export function requiredText(v: Buffer | null | undefined, command: string, column: string): string {
  const t = text(v);
  if (t === null)
    throw new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', `${command} returned NULL ${column}`);
  return t;
}

/** Runs fn; a PostgresServerError whose SQLSTATE is in the map becomes that ReplicationError (the server error as cause). */
export async function mapServerErrors<T>(
  fn: () => Promise<T>,
  map: Partial<Record<string, CodeOf<'ReplicationError'>>>,
  context: { slotName?: string; what: string },
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof PostgresServerError) {
      const code = map[e.sqlstate];
      if (code) {
        throw new ReplicationError(code, `${context.what}: ${e.message}`, {
          sqlstate: e.sqlstate,
          slotName: context.slotName,
          cause: e,
        });
      }
    }
    throw e;
  }
}
