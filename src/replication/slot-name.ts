/**
 * Physical replication slot names, checked as PostgreSQL's ReplicationSlotValidateName (slot.c)
 * does before anything is sent: 1..63 bytes (NAMEDATALEN - 1) of lower-case letters, digits and
 * underscores. A valid name needs no escaping; it is still double-quoted on the wire.
 */
import { ConfigError } from '../errors';

const SLOT_NAME_RE = /^[a-z0-9_]{1,63}$/;

export function isValidSlotName(name: string): boolean {
  return typeof name === 'string' && SLOT_NAME_RE.test(name);
}

/** Throws ConfigError CONFIG_INVALID_SLOT_NAME for a name the server would reject. */
export function assertSlotName(name: string): void {
  if (!isValidSlotName(name)) {
    const shown =
      typeof name === 'string'
        ? JSON.stringify(name.length > 80 ? name.slice(0, 80) + '…' : name)
        : String(name);
    throw new ConfigError('CONFIG_INVALID_SLOT_NAME', `invalid replication slot name ${shown}`, {
      hint: 'use 1 to 63 characters from a-z, 0-9 and _',
    });
  }
}

/** The slot name as an identifier for a replication command: validated, then double-quoted. */
export function quoteSlotName(name: string): string {
  assertSlotName(name);
  return `"${name}"`;
}
