/**
 * restore/: full restore, recovery targets, standby set-up and table restore. It reads the
 * repository (archive/), runs local servers only through local-server/, and never writes to a
 * repository.
 *
 * This file: restore of a base backup into an empty directory (protocol notes §7.2): base.tar into
 * the data directory, each `<oid>.tar` into its (possibly remapped) tablespace directory, the WAL the
 * backup carries into pg_wal, the server's backup_manifest beside them as pg_basebackup's plain
 * format leaves it, and the recovery settings (./recovery-config) with a restore_command that runs
 * `pgark archive-fetch`. backup_label is kept (deleting it would silently corrupt the cluster).
 *
 * Everything streams: storage → sha256 check → decompression → tar reader → file, one member at a
 * time; nothing is buffered whole. Every object's sha256 is checked against the catalog entry.
 *
 * A restore in progress is marked by the file `pgark.restore-incomplete` in the data directory,
 * written first and removed last: a restore that fails (a corrupted object, a full disk) or is
 * killed leaves the partial directory with that marker, never something that looks complete.
 */
import { existsSync } from 'node:fs';
import {
  appendFile,
  chmod,
  lchown,
  mkdir,
  open,
  readdir,
  rm,
  symlink,
  writeFile,
  lstat,
} from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AbortError,
  ConfigError,
  IntegrityError,
  RestoreError,
  isPgarkError,
  throwIfAborted,
} from '../errors';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import type { Storage } from '../storage/storage';
import type { ReplicationConnectionOptions } from '../connection/replication-connection';
import { createStandbySlot } from './standby';
import { openRepository } from '../archive/repository';
import {
  assertCatalogEntry,
  readBackupCatalogEntry,
  type BackupCatalogEntry,
  type CatalogObject,
} from '../archive/backup-catalog';
import type { Stanza } from '../archive/repository';
import { isServerRunning } from '../local-server/server-control';
import {
  archiveFetchCommand,
  buildRecoveryConfig,
  type RecoveryOptions,
  type StandbySettings,
} from './recovery-config';
import {
  backupSummary,
  planRestore,
  RecoveryTargetError,
  type PlannerBackup,
  type PlannerPartialTail,
  type PlannerSegment,
  type RestorePlan,
  type RestorePlanInput,
} from './recovery-target';
import { chooseBackupByStopRecord } from './target-scan';
import { listRestoreWindow } from './restore-window';
import { readBackupOldestActiveXid } from './backup-checkpoint';
import { extractArchive, ObjectCheck, RESTORE_READ_BYTES, safeJoin } from './extract-archive';
import { syncTree } from './sync-tree';
import { formatLsn, isWalFileName, parseWalFileName } from '../lsn';
import { placeWalTail, type PlacedWalTail } from '../archive/wal-tail'; // [wal tail, helper-11]

/**
 * restore_command through `pgark archive-fetch %f %p`: where the repository is (as the CLI's
 * `--repo` takes it) and how to run the CLI. No secret is ever written into the settings: S3
 * credentials reach the command through the server's environment (startServer's `env`), or through
 * `credentials`, written into `envFile` with mode 0600 for the server's user only.
 */
export interface ArchiveFetchSpec {
  /** The repository location: a directory, or s3://bucket/prefix (without credentials). */
  repo: string;
  /** pgark's CLI script. @default dist/cli.js next to this module (the installed package) */
  cliPath?: string;
  /** @default process.execPath */
  nodePath?: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  /** archive-fetch --prefetch (segments downloaded ahead). @default archive-fetch's default (8) */
  prefetch?: number;
  /** archive-fetch --fatal-errors: a storage error stops recovery (FATAL) rather than ending it early. @default true with a recovery target */
  fatalErrors?: boolean;
  /** S3 credentials to put into `envFile` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Where to write the credentials (outside the data directory, so base backups of the restored cluster never carry it). */
  envFile?: string;
}

/** A standby built from the backup (standby.signal, primary_conninfo, primary_slot_name). */
export interface StandbyOptions {
  /**
   * libpq conninfo of the primary. It must not contain a password (it would be written into
   * postgresql.auto.conf): use `passfile=…` readable by the server's user, or ~/.pgpass.
   */
  primaryConninfo: string;
  /** primary_slot_name. */
  slotName?: string;
  /**
   * Create the slot on the primary first (CREATE_REPLICATION_SLOT … PHYSICAL RESERVE_WAL) through this
   * replication connection; an existing slot of that name is reused.
   */
  createSlot?: ReplicationConnectionOptions;
}

export interface RestoreBackupOptions extends ObserveOptions {
  storage: Storage;
  /** An empty or missing directory; created with mode 0700. */
  targetDir: string;
  /** @default 'main' */
  stanza?: string;
  /**
   * A backup id, or 'latest'. Undefined: with a time or LSN recovery target, the newest backup that
   * ends before the target; otherwise the newest. @default undefined
   */
  backupId?: string;
  /**
   * New locations of tablespaces, by OID (or by their original location). Tablespaces not listed
   * are restored to their original location, which must then be empty or missing.
   */
  tablespaceMapping?: Record<string, string>;
  /** Tablespaces not in `tablespaceMapping` go to `<tablespaceRoot>/<oid>` instead of their original location. */
  tablespaceRoot?: string;
  /** Owner of everything restored (the server's OS user) when running as root. */
  owner?: { uid: number; gid: number };
  /**
   * Empty a non-empty target (and tablespace) directory first. A directory with a running server's
   * postmaster.pid is never touched. @default false
   */
  clean?: boolean;
  /** The restore_command (archive recovery from the repository). Without it (and without `restoreCommand`) no recovery settings are written unless `recovery`/`standby` ask for them. */
  archive?: ArchiveFetchSpec;
  /** A complete restore_command line instead of `archive` (%f/%p as PostgreSQL replaces them). */
  restoreCommand?: string;
  /** Point-in-time recovery: target, inclusive, timeline, action. Writes recovery.signal. */
  recovery?: RecoveryOptions;
  /** Build a standby instead (standby.signal). */
  standby?: StandbyOptions;
  /**
   * [wal tail, helper-11] With archive recovery to the end of the archive or a target (not a
   * standby, not `immediate`): place the newest timeline's durable partial segments (the streaming
   * archiver's tip) into pg_wal under full names, zero-padded, so recovery replays every WAL byte
   * the archiver made durable (RPO 0). See src/archive/wal-tail.ts for the rules. @default true
   */
  walTail?: boolean;
  /**
   * For a restore-point (`name`) or `xid` target: read the WAL the restore would replay (from the
   * backup's start through the archive and its partial tail) and refuse, before anything is written,
   * when it holds no such restore point, or no commit/abort of that xid, after the backup's end
   * (RESTORE_TARGET_OUT_OF_RANGE); an older backup is chosen when the record lies before the newest
   * one's end. Stops at the first match; emits `restore.target-scan` with the bytes read. Turn it off
   * for very large archives (the scan reads every WAL byte up to the record). @default true
   */
  checkTargetExists?: boolean;
  /** More settings appended to postgresql.auto.conf (e.g. `{ archive_mode: 'off' }` for a throw-away copy). */
  settings?: Record<string, string | number | boolean>;
  signal?: AbortSignal;
}

export interface RestoreBackupResult {
  backupId: string;
  targetDir: string;
  /** Where each tablespace was restored. */
  tablespaces: { oid: number; location: string }[];
  /** Bytes read from storage. */
  bytes: number;
  entry: BackupCatalogEntry;
  /** The signal file written, if any. */
  signalFile?: 'recovery.signal' | 'standby.signal';
  /** The settings appended to postgresql.auto.conf (name → value). */
  recoverySettings: Record<string, string>;
  /** The planner's view (when a recovery target was given): how far this backup plus the archive can reach, and the WAL ranges. */
  plan?: RestorePlan;
  /** [wal tail, helper-11] The partial segments placed into pg_wal (see `walTail`). */
  walTail?: PlacedWalTail;
}

export { extractArchive } from './extract-archive';

/** Marks a restore in progress (written first, removed last). */
export const RESTORE_INCOMPLETE_MARKER = 'pgark.restore-incomplete';

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/**
 * Checks that a target directory is missing or empty (or, with `clean`, empties it). A directory
 * whose postmaster.pid names a live process is never touched.
 * @throws RestoreError RESTORE_TARGET_NOT_EMPTY / RESTORE_TARGET_IN_USE
 */
export async function checkRestoreTarget(dir: string, options: { clean?: boolean } = {}): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new RestoreError(
        'RESTORE_TARGET_NOT_EMPTY',
        `restore target ${dir} exists and is not a directory`,
      );
    }
    throw new RestoreError(
      'RESTORE_TARGET_NOT_EMPTY',
      `restore target ${dir} cannot be read: ${(e as Error).message}`,
      { cause: e },
    );
  }
  if (names.includes('postmaster.pid') && (!options.clean || isServerRunning(dir))) {
    throw new RestoreError(
      'RESTORE_TARGET_IN_USE',
      `restore target ${dir} holds a running (or crashed) server's postmaster.pid`,
      {
        hint: 'stop the server first; a restore never touches the directory of a running server',
      },
    );
  }
  if (names.length > 0) {
    if (!options.clean && names.includes(RESTORE_INCOMPLETE_MARKER)) {
      throw new RestoreError(
        'RESTORE_INCOMPLETE',
        `restore target ${dir} holds an incomplete restore (${RESTORE_INCOMPLETE_MARKER})`,
        {
          hint: 'restore again with clean (--clean), or remove the directory',
        },
      );
    }
    if (!options.clean) {
      throw new RestoreError('RESTORE_TARGET_NOT_EMPTY', `restore target ${dir} is not empty`, {
        hint: 'restore into an empty or missing directory, or ask to clean it (--clean)',
      });
    }
    for (const n of names) await rm(join(dir, n), { recursive: true, force: true });
  }
}

/** Escapes a path for tablespace_map as do_pg_backup_start does (`\`, `\n`, `\r` prefixed with `\`). */
export function escapeTablespaceMapPath(path: string): string {
  return path.replace(/[\\\n\r]/g, (c) => `\\${c}`);
}

/** `sync: false` leaves the fsync to the final syncTree pass (archive members: see ./sync-tree). */
async function writeFileStream(
  path: string,
  body: AsyncIterable<Buffer> | Buffer,
  sync = true,
): Promise<number> {
  const fh = await open(path, 'wx', FILE_MODE);
  let n = 0;
  try {
    if (Buffer.isBuffer(body)) {
      await fh.write(body);
      n = body.length;
    } else {
      for await (const chunk of body) {
        await fh.write(chunk);
        n += chunk.length;
      }
    }
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
  return n;
}

/** Reads an object, checking its sha256 against the catalog when the stream ends (`check()`). */
async function readVerified(
  storage: Storage,
  obj: CatalogObject,
  signal: AbortSignal | undefined,
): Promise<{ stream: AsyncIterable<Buffer>; check: () => void }> {
  const src = await storage.get(obj.key, { signal, readChunkBytes: RESTORE_READ_BYTES });
  const objectCheck = new ObjectCheck(obj);
  return {
    stream: (async function* () {
      for await (const chunk of src as AsyncIterable<Buffer>) {
        objectCheck.update(chunk);
        yield chunk;
      }
    })(),
    check: () => objectCheck.check(),
  };
}

async function chownRecursive(path: string, owner: { uid: number; gid: number }): Promise<void> {
  const st = await lstat(path);
  await lchown(path, owner.uid, owner.gid);
  if (st.isDirectory()) {
    for (const name of await readdir(path)) await chownRecursive(join(path, name), owner);
  }
}

function ownModuleDir(): string | undefined {
  // ESM build: import.meta.url; the CJS build has __dirname instead.
  const url = (import.meta as { url?: string }).url;
  if (url) return dirname(fileURLToPath(url));
  return typeof __dirname === 'string' ? __dirname : undefined;
}

/** The CLI script of an installed pgark (dist/cli.js beside dist/index.js), or undefined. */
export function defaultCliPath(): string | undefined {
  const dir = ownModuleDir();
  const candidate = dir ? join(dir, 'cli.js') : undefined;
  return candidate && existsSync(candidate) ? candidate : undefined;
}

/** Refuses a conninfo that carries a password (it would land in postgresql.auto.conf). */
function assertNoPassword(conninfo: string): void {
  if (
    /(^|\s)password\s*=/i.test(conninfo) ||
    /^postgres(ql)?:\/\/[^/@]*:[^/@]*@/i.test(conninfo) ||
    /[?&]password=/i.test(conninfo)
  ) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      'primary_conninfo must not contain a password (it would be written into postgresql.auto.conf)',
      {
        hint: "use passfile=<file readable only by the server user> in the conninfo, or the server user's ~/.pgpass",
      },
    );
  }
}

/** Whole archived segments of a stanza (for the planner). */
export async function listArchivedSegments(stanza: Stanza, signal?: AbortSignal): Promise<PlannerSegment[]> {
  const out: PlannerSegment[] = [];
  for await (const o of stanza.listWal({ signal })) {
    if (o.parsed.kind !== 'wal-segment') continue;
    const { timeline, segno } = parseWalFileName(o.parsed.walName, stanza.info.walSegmentSize);
    out.push(o.lastModified ? { timeline, segno, lastModified: o.lastModified } : { timeline, segno });
  }
  return out;
}

async function chooseBackup(
  stanza: Stanza,
  options: RestoreBackupOptions,
): Promise<{ entry: BackupCatalogEntry; plan?: RestorePlan }> {
  const signal = options.signal;
  const target = options.recovery?.target;
  const wantsWindow = target !== undefined && !('immediate' in target);
  if (!wantsWindow && options.backupId !== undefined) {
    return { entry: await readBackupCatalogEntry(stanza, options.backupId, { signal }) };
  }
  const entries: BackupCatalogEntry[] = [];
  for (const id of await stanza.listBackupIds({ signal })) {
    const e = await stanza.readCatalogEntry<unknown>(id, { signal });
    assertCatalogEntry(e, id);
    entries.push(e);
  }
  // The partial tail counts only when restore will place it (the conditions of the wal tail step below).
  const withPartialTail =
    (options.restoreCommand !== undefined || options.archive !== undefined) &&
    !options.standby &&
    options.walTail !== false;
  const { segments, partialTail } = wantsWindow
    ? await listRestoreWindow(options.storage, stanza, {
        withPartialTail,
        ...(options.recovery?.timeline !== undefined ? { recoveryTimeline: options.recovery.timeline } : {}),
        ...(signal ? { signal } : {}),
      })
    : { segments: [], partialTail: undefined };
  // An xid target: the oldest active xid of each backup's checkpoint, where it can be read cheaply.
  const backups: PlannerBackup[] = [];
  for (const e of entries) {
    const x =
      target && 'xid' in target ? await readBackupOldestActiveXid(options.storage, e, signal) : undefined;
    backups.push(x ? { ...e, oldestActiveXid: x } : e);
  }
  const planInput: RestorePlanInput = {
    backups,
    segments,
    ...(partialTail ? { partialTail } : {}),
    walSegmentSize: stanza.info.walSegmentSize,
    ...(options.backupId !== undefined ? { backupId: options.backupId } : {}),
    ...(target ? { target } : {}),
    ...(options.recovery?.timeline !== undefined ? { timeline: options.recovery.timeline } : {}),
  };
  let plan = planRestore(planInput);
  if (target && ('name' in target || 'xid' in target) && options.checkTargetExists !== false) {
    plan = await planByStopRecord(stanza, options, planInput, plan, entries, partialTail);
  }
  const chosen = plan.backup.backupId;
  const entry = entries.find((e) => e.backupId === chosen)!;
  return wantsWindow ? { entry, plan } : { entry };
}

/**
 * A restore-point or xid target: the newest backup the planner accepts whose replayed WAL holds the
 * stop record after its end (./target-scan); refused with RecoveryTargetError when none does.
 */
async function planByStopRecord(
  stanza: Stanza,
  options: RestoreBackupOptions,
  input: RestorePlanInput,
  plan: RestorePlan,
  entries: BackupCatalogEntry[],
  partialTail: PlannerPartialTail | undefined,
): Promise<RestorePlan> {
  const target = input.target!;
  const tl = input.timeline ?? 'latest';
  // Candidates: the planner's choice, and without an explicit backup each older one it accepts.
  const plans = new Map<string, RestorePlan>([[plan.backup.backupId, plan]]);
  const candidates: BackupCatalogEntry[] = [];
  const newestFirst = [...entries].sort((a, b) =>
    a.backupId < b.backupId ? 1 : a.backupId > b.backupId ? -1 : 0,
  );
  for (const e of newestFirst) {
    if (e.backupId > plan.backup.backupId) continue;
    if (e.backupId !== plan.backup.backupId) {
      if (options.backupId !== undefined || (typeof tl === 'number' && e.endTimeline > tl)) continue;
      try {
        plans.set(e.backupId, planRestore({ ...input, backupId: e.backupId }));
      } catch (err) {
        if (err instanceof RecoveryTargetError) continue;
        throw err;
      }
    }
    candidates.push(e);
  }
  const choice = await chooseBackupByStopRecord({
    storage: options.storage,
    stanza,
    target,
    segments: input.segments,
    ...(partialTail ? { partialTail } : {}),
    ...(input.timeline !== undefined ? { timeline: input.timeline } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    candidates,
  });
  if (choice.backup) return plans.get(choice.backup.backupId)!;
  const what =
    'name' in target
      ? `restore point ${JSON.stringify(target.name)}`
      : `xid ${'xid' in target ? String(target.xid) : '?'}`;
  const before = choice.scans.find((s) => s.result.verdict === 'before');
  const newest = choice.scans[0]!;
  const detail = {
    backups: [...entries].sort((a, b) => (a.backupId < b.backupId ? -1 : 1)).map(backupSummary),
    walRanges: plan.walRanges,
    ...(partialTail ? { partialTail } : {}),
  };
  if (before) {
    const b = entries.find((e) => e.backupId === before.backupId)!;
    throw new RecoveryTargetError(
      `the recovery target (${what}) is first reached at ${formatLsn(before.result.lsn!)}, before the end of backup ${b.backupId} (${b.endLsn}): recovery would stop before it is consistent`,
      { ...detail, hint: 'choose an older backup or a later target' },
    );
  }
  const scannedTo = newest.result.scannedTo;
  throw new RecoveryTargetError(
    `the wal recovery from backup ${newest.backupId} would replay holds no ${'name' in target ? what : `commit or abort of ${what}`} after the backup's end (read ${newest.result.segmentsScanned} segments${scannedTo !== undefined ? ` up to ${formatLsn(scannedTo)}` : ''})`,
    {
      ...detail,
      hint:
        'name' in target
          ? 'create it with pg_create_restore_point() and archive the wal (pg_switch_wal()), or check the name; checkTargetExists: false skips this check'
          : 'the transaction has not ended, or its end is not archived yet (pg_switch_wal()); checkTargetExists: false skips this check',
    },
  );
}

function buildRestoreCommand(options: RestoreBackupOptions, stanzaName: string): string | undefined {
  if (options.restoreCommand !== undefined) return options.restoreCommand;
  const a = options.archive;
  if (!a) return undefined;
  const cliPath = a.cliPath ?? defaultCliPath();
  if (!cliPath) {
    throw new ConfigError('CONFIG_INVALID_OPTION', "cannot find pgark's cli script for restore_command", {
      hint: 'pass archive.cliPath (the dist/cli.js of an installed pgark, readable by the server user)',
    });
  }
  if (a.credentials && !a.envFile) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      'archive.credentials needs archive.envFile (a file only the server user can read)',
    );
  }
  const hasTarget = options.recovery?.target !== undefined;
  return archiveFetchCommand({
    nodePath: a.nodePath ?? process.execPath,
    cliPath: resolve(cliPath),
    repo: a.repo,
    stanza: stanzaName,
    ...(a.s3Endpoint ? { s3Endpoint: a.s3Endpoint } : {}),
    ...(a.s3Region ? { s3Region: a.s3Region } : {}),
    ...(a.s3PathStyle ? { s3PathStyle: true } : {}),
    ...(a.prefetch !== undefined ? { prefetch: a.prefetch } : {}),
    fatalErrors: a.fatalErrors ?? hasTarget,
    ...(a.credentials && a.envFile ? { envFile: resolve(a.envFile) } : {}),
  });
}

async function writeEnvFile(
  path: string,
  c: NonNullable<ArchiveFetchSpec['credentials']>,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  if ([c.accessKeyId, c.secretAccessKey, c.sessionToken ?? ''].some((v) => /[\0\n\r]/.test(v))) {
    throw new ConfigError('CONFIG_INVALID_OPTION', 'a credential contains a newline or NUL');
  }
  const line = (k: string, v: string): string => `${k}='${v.replaceAll("'", `'\\''`)}'\n`;
  let text = line('AWS_ACCESS_KEY_ID', c.accessKeyId) + line('AWS_SECRET_ACCESS_KEY', c.secretAccessKey);
  if (c.sessionToken) text += line('AWS_SESSION_TOKEN', c.sessionToken);
  await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
  await rm(path, { force: true });
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.write(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (owner) await lchown(path, owner.uid, owner.gid);
}

/**
 * Restores a base backup from a repository into an empty directory and writes the recovery
 * settings for the backup's server version (12+: `recovery.signal` or `standby.signal`, settings
 * appended to `postgresql.auto.conf`). The result starts with the server binaries of the backup's
 * major version (findServerBinaries) and recovers:
 * - without `archive`/`restoreCommand`/`recovery`/`standby`: crash recovery from backup_label,
 *   replaying the WAL the backup carries (a self-contained backup), nothing written;
 * - with `archive`: archive recovery through `pgark archive-fetch` to the end of the archive, or to
 *   `recovery.target` (time, lsn, xid, restore point name, immediate), then `recovery.action`;
 * - with `standby`: a standby streaming from `primaryConninfo`, the archive as its fallback.
 *
 * The recovery target is checked against the repository before anything is written (see
 * ./recovery-target for what is checked). The data directory gets mode 0700, and as root every file
 * goes to `owner`. A failure leaves the partial directory marked by `pgark.restore-incomplete`.
 *
 * Errors: RestoreError RESTORE_TARGET_NOT_EMPTY, RESTORE_TARGET_IN_USE, RESTORE_BACKUP_NOT_FOUND,
 * RESTORE_TARGET_OUT_OF_RANGE (a RecoveryTargetError listing backups and WAL ranges);
 * IntegrityError INTEGRITY_CHECKSUM_MISMATCH (an object differs from its catalog entry),
 * INTEGRITY_ARCHIVE_INVALID; ConfigError CONFIG_INVALID_OPTION; StorageError; AbortError.
 *
 * @example
 * ```ts
 * await restoreBackup({
 *   storage, targetDir: '/var/lib/postgresql/16/restored',
 *   archive: { repo: 's3://backups/pg', s3Endpoint: 'https://s3.example.net' },
 *   recovery: { target: { time: '2026-01-31T12:00:00Z' }, action: 'promote' },
 * });
 * ```
 */
export async function restoreBackup(options: RestoreBackupOptions): Promise<RestoreBackupResult> {
  const signal = options.signal;
  const logger = options.logger ?? noopLogger;
  const targetDir = resolve(options.targetDir);
  throwIfAborted(signal, 'restore');
  if (options.standby) assertNoPassword(options.standby.primaryConninfo);
  const repo = await openRepository(options.storage, { signal });
  const stanza = await repo.openStanza(options.stanza ?? 'main', { signal });
  const { entry, plan } = await chooseBackup(stanza, options);
  const backupId = entry.backupId;

  // Everything that can be refused is checked before the first byte is written.
  const restoreCommand = buildRestoreCommand(options, stanza.name);
  const wantsConfig =
    restoreCommand !== undefined ||
    options.recovery !== undefined ||
    options.standby !== undefined ||
    options.settings !== undefined;
  const config = wantsConfig
    ? buildRecoveryConfig({
        major: entry.pgMajor,
        ...(restoreCommand !== undefined ? { restoreCommand } : {}),
        ...(options.recovery ? { recovery: options.recovery } : {}),
        ...(options.standby
          ? {
              standby: {
                primaryConninfo: options.standby.primaryConninfo,
                ...(options.standby.slotName ? { primarySlotName: options.standby.slotName } : {}),
              } satisfies StandbySettings,
            }
          : {}),
        ...(options.settings ? { extra: options.settings } : {}),
      })
    : undefined;

  // Where each tablespace goes.
  const mapping = options.tablespaceMapping ?? {};
  const tablespaces = entry.tablespaces.map((t) => {
    const to =
      mapping[String(t.oid)] ??
      mapping[t.location] ??
      (options.tablespaceRoot ? join(resolve(options.tablespaceRoot), String(t.oid)) : t.location);
    if (!isAbsolute(to))
      throw new ConfigError(
        'CONFIG_INVALID_OPTION',
        `tablespace ${t.oid} must map to an absolute path (got ${JSON.stringify(to)})`,
      );
    return { oid: t.oid, original: t.location, location: resolve(to) };
  });
  await checkRestoreTarget(targetDir, { clean: options.clean });
  for (const t of tablespaces) await checkRestoreTarget(t.location, { clean: options.clean });

  if (options.standby?.createSlot && options.standby.slotName) {
    await createStandbySlot(options.standby.createSlot, options.standby.slotName);
  }

  emit(options, { type: 'restore.started', backupId, targetDir });
  let bytes = 0;
  let walTail: PlacedWalTail | undefined; // [wal tail, helper-11]
  const marker = join(targetDir, RESTORE_INCOMPLETE_MARKER);
  try {
    await mkdir(targetDir, { recursive: true, mode: DIR_MODE });
    // PostgreSQL refuses a data directory with group/other access beyond 0750 (miscinit.c checkDataDir).
    await chmod(targetDir, DIR_MODE);
    await writeFile(
      marker,
      `restore of backup ${backupId} started ${new Date().toISOString()}; this directory is incomplete\n`,
      { mode: FILE_MODE },
    );
    for (const t of tablespaces) {
      await mkdir(t.location, { recursive: true, mode: DIR_MODE });
      await chmod(t.location, DIR_MODE);
    }
    for (const obj of entry.objects.filter((o) => o.kind === 'archive')) {
      throwIfAborted(signal, 'restore');
      const ts = obj.spcOid === undefined ? undefined : tablespaces.find((t) => t.oid === obj.spcOid);
      if (obj.spcOid !== undefined && !ts) {
        throw new IntegrityError(
          'INTEGRITY_BACKUP_INCOMPLETE',
          `archive ${obj.name} belongs to tablespace ${obj.spcOid}, which the catalog entry does not list`,
        );
      }
      const root = ts ? ts.location : targetDir;
      await extractArchive(options.storage, obj, root, {
        signal,
        onSymlink: (name) => {
          const m = /^pg_tblspc\/(\d+)$/.exec(name);
          const t = m ? tablespaces.find((x) => x.oid === Number(m[1])) : undefined;
          return t?.location;
        },
      });
      bytes += obj.size;
      emit(options, {
        type: 'restore.progress',
        backupId,
        bytesDone: bytes,
        bytesTotal: entry.sizes.storedBytes,
      });
    }

    // Tablespaces: symlinks pg_tblspc/<oid> → location (pg_verifybackup walks them), and
    // tablespace_map rewritten only when a location changed (the server recreates the links from it).
    if (tablespaces.length > 0) {
      const tblspc = join(targetDir, 'pg_tblspc');
      await mkdir(tblspc, { recursive: true, mode: DIR_MODE });
      for (const t of tablespaces) {
        const link = join(tblspc, String(t.oid));
        if (
          !(await lstat(link).then(
            () => true,
            () => false,
          ))
        )
          await symlink(t.location, link);
      }
      if (tablespaces.some((t) => t.location !== t.original)) {
        const mapFile = join(targetDir, 'tablespace_map');
        const text = tablespaces.map((t) => `${t.oid} ${escapeTablespaceMapPath(t.location)}\n`).join('');
        await rm(mapFile, { force: true });
        await writeFileStream(mapFile, Buffer.from(text));
      }
    }

    // WAL carried as objects (wal: 'stream'): into pg_wal, marked as archived like pg_basebackup does.
    const walDir = join(targetDir, 'pg_wal');
    for (const obj of entry.objects.filter((o) => o.kind === 'wal')) {
      throwIfAborted(signal, 'restore');
      const name = obj.name.replace(/^wal\//, '');
      await mkdir(join(walDir, 'archive_status'), { recursive: true, mode: DIR_MODE });
      const { stream, check } = await readVerified(options.storage, obj, signal);
      await writeFileStream(safeJoin(walDir, name), stream);
      check();
      if (isWalFileName(name) || name.endsWith('.history')) {
        await writeFile(join(walDir, 'archive_status', `${name}.done`), '', { mode: FILE_MODE });
      }
      bytes += obj.size;
    }

    // ---- [wal tail, helper-11] begin: the archive's durable partial tip (RPO 0), see src/archive/wal-tail.ts
    if (
      restoreCommand !== undefined &&
      !options.standby &&
      options.walTail !== false &&
      !(options.recovery?.target && 'immediate' in options.recovery.target)
    ) {
      walTail = await placeWalTail({
        storage: options.storage,
        stanza,
        walDir,
        backupTimeline: entry.endTimeline,
        ...(options.recovery?.timeline !== undefined ? { recoveryTimeline: options.recovery.timeline } : {}),
        ...(signal ? { signal } : {}),
      });
      if (walTail.files.length)
        logger.info("placed the archive's partial wal tail into pg_wal", {
          files: walTail.files.map((f) => f.walName),
          timeline: walTail.timeline,
        });
    }
    // ---- [wal tail, helper-11] end

    // backup_manifest beside the data, as pg_basebackup's plain format leaves it.
    const manifest = entry.objects.find((o) => o.kind === 'manifest');
    if (manifest) {
      const { stream, check } = await readVerified(options.storage, manifest, signal);
      await writeFileStream(join(targetDir, 'backup_manifest'), stream);
      check();
      bytes += manifest.size;
    }

    // A backup taken from a standby carries that standby's standby.signal (BASE_BACKUP does not
    // exclude the signal files): started as is, the copy would follow the live upstream past the
    // backup's end, and standby.signal would win over the recovery.signal written below. The kind of
    // recovery is this restore's decision (as pgBackRest's restore does): the backup's own signal
    // files go, and the one the options ask for is written.
    for (const name of ['standby.signal', 'recovery.signal']) {
      await rm(join(targetDir, name), { force: true });
    }
    if (config) {
      await appendFile(join(targetDir, 'postgresql.auto.conf'), config.autoConfText, { mode: FILE_MODE });
      await writeFile(join(targetDir, config.signalFile), '', { mode: FILE_MODE });
    }
    if (options.archive?.credentials && options.archive.envFile) {
      await writeEnvFile(resolve(options.archive.envFile), options.archive.credentials, options.owner);
    }

    if (options.owner) {
      await chownRecursive(targetDir, options.owner);
      for (const t of tablespaces) await chownRecursive(t.location, options.owner);
    }
    // Every file and directory durable (archive members were written without a per-file fsync),
    // then last: the directory is complete.
    await syncTree(targetDir);
    for (const t of tablespaces) await syncTree(t.location);
    await rm(marker);
    const dirHandle = await open(targetDir, 'r');
    await dirHandle.sync().finally(() => dirHandle.close());
  } catch (e) {
    // The partial directory stays, marked incomplete (the marker was written first); a later
    // restore refuses it unless asked to clean it.
    logger.warn('restore failed; the partial directory is marked incomplete', {
      backupId,
      targetDir,
      marker: RESTORE_INCOMPLETE_MARKER,
      error: isPgarkError(e) ? e.code : String(e),
    });
    if (signal?.aborted && !(isPgarkError(e) && e.code === 'ABORTED'))
      throw new AbortError('restore aborted', { cause: e });
    throw e;
  }
  emit(options, { type: 'restore.completed', backupId, targetDir, bytes });
  return {
    backupId,
    targetDir,
    tablespaces: tablespaces.map((t) => ({ oid: t.oid, location: t.location })),
    bytes,
    entry,
    ...(config ? { signalFile: config.signalFile } : {}),
    recoverySettings: Object.fromEntries(config?.settings ?? []),
    ...(plan ? { plan } : {}),
    ...(walTail ? { walTail } : {}), // [wal tail, helper-11]
  };
}
