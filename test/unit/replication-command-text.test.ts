import { describe, expect, it } from 'vitest';
import {
  createReplicationSlotCommand,
  dropReplicationSlotCommand,
  readReplicationSlotCommand,
} from '../../src/replication/slot-command';
import { assertSlotName, isValidSlotName } from '../../src/replication/slot-name';
import { showCommand } from '../../src/replication/show-command';
import { timelineHistoryCommand } from '../../src/replication/timeline-history-command';
import { ConfigError } from '../../src/errors';

describe('slot names (ReplicationSlotValidateName)', () => {
  it('accepts a-z, 0-9, _ of 1..63 bytes', () => {
    for (const n of ['a', 'pgark_1', '_', '0', 'a'.repeat(63)]) expect(isValidSlotName(n)).toBe(true);
  });
  it('refuses anything else with CONFIG_INVALID_SLOT_NAME', () => {
    for (const n of ['', 'A', 'a-b', 'a b', 'a"b', 'é', 'a'.repeat(64), 'x;DROP', 'a\0']) {
      expect(isValidSlotName(n)).toBe(false);
      expect(() => assertSlotName(n)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID_SLOT_NAME' }));
    }
    expect(() => createReplicationSlotCommand({ name: 'Bad' }, 170000)).toThrow(ConfigError);
    expect(() => dropReplicationSlotCommand('a"; x')).toThrow(ConfigError);
    expect(() => readReplicationSlotCommand('')).toThrow(ConfigError);
  });
});

describe('slot command text', () => {
  it('uses the legacy grammar on 14 and the option list on 15+', () => {
    expect(createReplicationSlotCommand({ name: 's', reserveWal: true }, 140023)).toBe(
      'CREATE_REPLICATION_SLOT "s" PHYSICAL RESERVE_WAL',
    );
    expect(createReplicationSlotCommand({ name: 's', reserveWal: true, temporary: true }, 150018)).toBe(
      'CREATE_REPLICATION_SLOT "s" TEMPORARY PHYSICAL (RESERVE_WAL)',
    );
    expect(createReplicationSlotCommand({ name: 's' }, 180004)).toBe('CREATE_REPLICATION_SLOT "s" PHYSICAL');
    expect(dropReplicationSlotCommand('s', true)).toBe('DROP_REPLICATION_SLOT "s" WAIT');
    expect(dropReplicationSlotCommand('s')).toBe('DROP_REPLICATION_SLOT "s"');
    expect(readReplicationSlotCommand('s')).toBe('READ_REPLICATION_SLOT "s"');
  });
  it('SHOW and TIMELINE_HISTORY validate their argument', () => {
    expect(showCommand('wal_segment_size')).toBe('SHOW wal_segment_size');
    expect(showCommand('pg_stat_statements.max')).toBe('SHOW pg_stat_statements.max');
    for (const bad of ['', 'a b', 'x;y', '1a', "a'"])
      expect(() => showCommand(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID_IDENTIFIER' }));
    expect(timelineHistoryCommand(2)).toBe('TIMELINE_HISTORY 2');
    for (const bad of [0, -1, 1.5, 2 ** 32]) expect(() => timelineHistoryCommand(bad)).toThrow(ConfigError);
  });
});
