import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import {
  archiveFetchCommand,
  buildRecoveryConfig,
  quoteConfigValue,
  unquoteConfigValue,
} from '../../src/restore/recovery-config';
import { recoveryFromCli } from '../../src/cli/commands/restore';

describe('recovery settings', () => {
  it('quotes values as ALTER SYSTEM does and reads them back', () => {
    for (const v of ['plain', "it's", 'back\\slash', '\'%f\' "x"', '']) {
      const q = quoteConfigValue(v);
      expect(q.startsWith("'") && q.endsWith("'")).toBe(true);
      expect(unquoteConfigValue(q)).toBe(v);
    }
    expect(quoteConfigValue("a'b\\c")).toBe("'a''b\\\\c'");
    expect(() => quoteConfigValue('a\nb')).toThrow(ConfigError);
  });

  it('writes recovery.signal and one setting per target type', () => {
    const cases: [Parameters<typeof buildRecoveryConfig>[0]['recovery'], [string, string][]][] = [
      [
        { target: { time: new Date('2026-01-31T12:00:00.250Z') } },
        [
          ['recovery_target_time', '2026-01-31 12:00:00.250+00'],
          ['recovery_target_inclusive', 'on'],
          ['recovery_target_action', 'promote'],
        ],
      ],
      [
        { target: { lsn: '0/3000028' }, inclusive: false },
        [
          ['recovery_target_lsn', '0/3000028'],
          ['recovery_target_inclusive', 'off'],
          ['recovery_target_action', 'promote'],
        ],
      ],
      [
        { target: { lsn: 0x16b374d848n } },
        [
          ['recovery_target_lsn', '16/B374D848'],
          ['recovery_target_inclusive', 'on'],
          ['recovery_target_action', 'promote'],
        ],
      ],
      [
        { target: { xid: 1234 }, action: 'pause' },
        [
          ['recovery_target_xid', '1234'],
          ['recovery_target_inclusive', 'on'],
          ['recovery_target_action', 'pause'],
        ],
      ],
      [
        { target: { name: 'before-drop' }, action: 'shutdown' },
        [
          ['recovery_target_name', 'before-drop'],
          ['recovery_target_action', 'shutdown'],
        ],
      ],
      [
        { target: { immediate: true } },
        [
          ['recovery_target', 'immediate'],
          ['recovery_target_action', 'promote'],
        ],
      ],
    ];
    for (const [recovery, expected] of cases) {
      const c = buildRecoveryConfig({ major: 15, restoreCommand: 'x %f %p', recovery });
      expect(c.signalFile).toBe('recovery.signal');
      expect(c.settings).toEqual([
        ['restore_command', 'x %f %p'],
        ...expected,
        ['recovery_target_timeline', 'latest'],
      ]);
      expect(c.autoConfText).toContain("restore_command = 'x %f %p'\n");
    }
    expect(buildRecoveryConfig({ major: 18, recovery: { timeline: 3 } }).settings).toEqual([
      ['recovery_target_timeline', '3'],
    ]);
    expect(buildRecoveryConfig({ major: 18, recovery: { timeline: 'current' } }).settings).toEqual([
      ['recovery_target_timeline', 'current'],
    ]);
  });

  it('refuses what cannot be written', () => {
    const bad = [
      () => buildRecoveryConfig({ major: 11 }),
      () => buildRecoveryConfig({ major: 15, recovery: { target: { time: 'not a time' } } }),
      () => buildRecoveryConfig({ major: 15, recovery: { target: { lsn: 'zz' } } }),
      () => buildRecoveryConfig({ major: 15, recovery: { target: { xid: 'abc' } } }),
      () => buildRecoveryConfig({ major: 15, recovery: { target: { name: 'x'.repeat(64) } } }),
      () => buildRecoveryConfig({ major: 15, recovery: { timeline: 0 } }),
      () => buildRecoveryConfig({ major: 15, recovery: { action: 'pause' } }),
      () =>
        buildRecoveryConfig({
          major: 15,
          standby: { primaryConninfo: 'host=a' },
          recovery: { target: { immediate: true } },
        }),
    ];
    for (const f of bad) {
      try {
        f();
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
      }
    }
  });

  it('standby: standby.signal, primary_conninfo, primary_slot_name and the archive as fallback', () => {
    const c = buildRecoveryConfig({
      major: 16,
      restoreCommand: 'r',
      standby: { primaryConninfo: "host=p user=rep passfile='/x y'", primarySlotName: 's1' },
    });
    expect(c.signalFile).toBe('standby.signal');
    expect(Object.fromEntries(c.settings)).toMatchObject({
      restore_command: 'r',
      primary_conninfo: "host=p user=rep passfile='/x y'",
      primary_slot_name: 's1',
    });
    expect(c.autoConfText).toContain("primary_conninfo = 'host=p user=rep passfile=''/x y'''");
  });

  it('restore_command runs pgark archive-fetch with the repository options and no secret', () => {
    const cmd = archiveFetchCommand({
      nodePath: '/usr/bin/node',
      cliPath: '/opt/pgark 1/cli.js',
      repo: 's3://b/p',
      stanza: 'main',
      s3Endpoint: 'http://127.0.0.1:9000',
      prefetch: 4,
      fatalErrors: true,
    });
    expect(cmd).toBe(
      "/usr/bin/node '/opt/pgark 1/cli.js' archive-fetch %f %p --repo s3://b/p --stanza main --s3-endpoint http://127.0.0.1:9000 --prefetch 4 --fatal-errors",
    );
    expect(
      archiveFetchCommand({ nodePath: 'node', cliPath: '/a%b/cli.js', repo: '/r', stanza: 'm' }),
    ).toContain('/a%%b/cli.js');
    expect(
      archiveFetchCommand({
        nodePath: 'node',
        cliPath: '/c.js',
        repo: '/r',
        stanza: 'm',
        envFile: '/etc/pgark/s3.env',
      }),
    ).toMatch(/^set -a && \. \/etc\/pgark\/s3.env && set \+a && exec node/);
    expect(() =>
      archiveFetchCommand({ nodePath: 'n', cliPath: 'c', repo: 's3://key:secret@b/p', stanza: 'm' }),
    ).toThrow(ConfigError);
  });

  it('CLI recovery options map to RecoveryOptions', () => {
    expect(recoveryFromCli({})).toBeUndefined();
    expect(
      recoveryFromCli({
        targetLsn: '0/5000000',
        targetExclusive: true,
        targetTimeline: '2',
        targetAction: 'pause',
      }),
    ).toEqual({ target: { lsn: '0/5000000' }, inclusive: false, timeline: 2, action: 'pause' });
    expect(recoveryFromCli({ targetImmediate: true, targetTimeline: 'current' })).toEqual({
      target: { immediate: true },
      timeline: 'current',
    });
    expect(() => recoveryFromCli({ targetXid: '5', targetName: 'x' })).toThrow(ConfigError);
    expect(() => recoveryFromCli({ targetTimeline: 'newest' })).toThrow(ConfigError);
  });
});
