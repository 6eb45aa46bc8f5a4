/**
 * A standby built from a backup (PG16, fs): standby.signal, primary_conninfo with a passfile (no
 * password in postgresql.auto.conf), a slot created on the primary, restore_command as the
 * fallback. It connects and streams: a row written on the primary appears on the standby.
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ConfigError, restoreBackup } from '../../src/index';
import { chownTree, resolveServerUser } from '../../src/local-server';
import { archivingCluster, backup, bundleCli, makeRepo, restoredSlot, waitFor } from './restore-helpers';

it('standby from a backup streams from the primary through its slot', async () => {
  const cli = await bundleCli('restore-standby');
  const repo = await makeRepo('fs');
  const primary = await archivingCluster(16, repo, cli.cli);
  const slot = restoredSlot(primary.binaries, 'standby16');
  try {
    await primary.query(`CREATE TABLE s (id int PRIMARY KEY, v text)`);
    await primary.query(`INSERT INTO s SELECT g, 'before' FROM generate_series(1, 100) g`);
    await backup(primary, repo);
    const user = resolveServerUser();
    const passfile = join(slot.dir, 'pgpass');
    writeFileSync(
      passfile,
      `127.0.0.1:${primary.port}:*:${primary.replicationUser.user}:${primary.replicationUser.password}\n`,
      { mode: 0o600 },
    );
    chownTree(passfile, user);
    const conninfo = `host=127.0.0.1 port=${primary.port} user=${primary.replicationUser.user} passfile=${passfile} application_name=pgark_standby`;
    // A password in the conninfo is refused (it would be written into postgresql.auto.conf).
    await expect(
      restoreBackup({
        storage: repo.storage,
        targetDir: slot.dataDir,
        standby: { primaryConninfo: `${conninfo} password=x` },
      }),
    ).rejects.toBeInstanceOf(ConfigError);
    const r = await restoreBackup({
      storage: repo.storage,
      targetDir: slot.dataDir,
      archive: { ...repo.spec, cliPath: cli.cli },
      standby: {
        primaryConninfo: conninfo,
        slotName: 'pgark_standby',
        createSlot: {
          host: '127.0.0.1',
          port: primary.port,
          user: primary.replicationUser.user,
          password: primary.replicationUser.password,
          ssl: 'disable',
        },
      },
      owner: { uid: user.uid, gid: user.gid },
    });
    expect(r.signalFile).toBe('standby.signal');
    expect(existsSync(join(slot.dataDir, 'standby.signal'))).toBe(true);
    const auto = readFileSync(join(slot.dataDir, 'postgresql.auto.conf'), 'utf8');
    expect(auto).toContain('primary_slot_name');
    expect(auto).not.toContain(primary.replicationUser.password);
    expect(
      (
        await primary.query(
          `SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'pgark_standby'`,
        )
      )[0].n,
    ).toBe(1);

    await slot.start(repo.env);
    const c = await slot.client();
    expect((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true);
    await primary.query(`INSERT INTO s VALUES (1000, 'after')`);
    await waitFor('the row on the standby', async () =>
      (await c.query(`SELECT count(*)::int AS n FROM s WHERE id = 1000`)).rows[0].n === 1 ? true : undefined,
    );
    const rep = await primary.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = 'pgark_standby' AND state = 'streaming'`,
    );
    expect(rep[0]!.n).toBe(1);
    expect(
      (await primary.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'pgark_standby'`))[0]
        .active,
    ).toBe(true);
  } finally {
    await slot.destroy();
    await primary.destroy();
    await repo.cleanup();
    cli.cleanup();
  }
}, 300_000);
