/**
 * pgark's only public entry point: named exports and types, no logic.
 */
export * from './errors';
export type { Logger, LogFields, PgarkEvent, PgarkEventType, ObserveOptions } from './observe';
export { noopLogger } from './observe';
export * from './lsn';
export {
  ReplicationConnection,
  CONNECTION_DEFAULTS,
  describeTarget,
} from './connection/replication-connection';
export type {
  ReplicationConnectionOptions,
  SslMode,
  TlsOptions,
  CommandEvent,
  CommandStream,
  CommandOptions,
  QueryResult,
} from './connection/replication-connection';
export { parseConnectionString, toPgClientConfig, type PgClientConfig } from './connection/conninfo';
export * from './replication/index';
export type {
  Storage,
  ObjectInfo,
  PutOptions,
  PutResult,
  GetOptions,
  ListOptions,
  CallOptions,
  FixedSizeFile,
  FixedSizeFileOptions,
} from './storage/storage';
/** The local-directory storage driver: see createFsStorage's TSDoc. */
export { createFsStorage, assertValidStorageKey } from './storage/fs-storage';
export type { FsStorageOptions } from './storage/fs-storage';
/** The repository: format check, stanzas (one per cluster), catalog and WAL listings; its on-storage layout. */
export { openRepository, Repository, Stanza, canonicalJson, PGARK_VERSION } from './archive/repository';
export type {
  RepositoryFormat,
  StanzaInfo,
  OpenRepositoryOptions,
  OpenStanzaOptions,
  PutJsonOptions,
  GetJsonOptions,
  WalObject,
} from './archive/repository';
export {
  REPOSITORY_FORMAT_VERSION,
  REPOSITORY_FORMAT_KEY,
  makeBackupId,
  parseBackupId,
  isValidBackupId,
  isValidStanzaName,
  parseRepositoryKey,
} from './archive/repo-layout';
export type { RepositoryKey, BackupKind, ParsedBackupId, ArchiveCompression } from './archive/repo-layout';
export { findServerBinaries } from './local-server/find-binaries';
/** Local servers (throwaway clusters, restored clusters, drills), run as an unprivileged OS user when root. */
export { resolveServerUser, chownTree } from './local-server/os-user';
export type { ServerUser, ResolveServerUserOptions } from './local-server/os-user';
export {
  initCluster,
  startServer,
  stopServer,
  promote as promoteLocalServer,
  isServerRunning,
} from './local-server/server-control';
export type {
  InitClusterOptions,
  StartServerOptions,
  StopServerOptions,
  StopMode,
} from './local-server/server-control';
export type { ServerBinaries, FindServerBinariesOptions, BinariesSource } from './local-server/find-binaries';
/** The s3 storage driver (any S3-compatible store): see createS3Storage's TSDoc. */
export { createS3Storage, S3_STORAGE_DEFAULTS } from './storage/s3-storage';
export type { S3StorageOptions } from './storage/s3-storage';
export type { S3Credentials } from './storage/s3-client';
export { parseS3Location } from './storage/location';
export type { S3Location } from './storage/location';
/** Repository locations as text (a directory or s3://bucket/prefix) and the driver for one. */
export { openStorage, parseStorageLocation } from './storage/location';
export type { StorageLocation, OpenStorageOptions } from './storage/location';
/** archive_command / restore_command: see archivePush's and archiveFetch's TSDoc. */
export { archivePush } from './archive/archive-push';
export type { ArchivePushOptions, ArchivePushResult } from './archive/archive-push';
export { archiveFetch, ARCHIVE_FETCH_DEFAULTS } from './archive/archive-fetch';
export type { ArchiveFetchOptions, ArchiveFetchResult } from './archive/archive-fetch';
/** Base backups over the replication protocol into a repository: see runBaseBackup's TSDoc. */
export { runBaseBackup, BASE_BACKUP_DEFAULTS } from './archive/base-backup-writer';
export type {
  RunBaseBackupOptions,
  BaseBackupResult,
  BackupCompression,
  WalMethod,
} from './archive/base-backup-writer';
export type {
  ManifestChecksumAlgorithm as BackupManifestChecksumAlgorithm,
  CompressionMethod,
} from './replication/base-backup-command';
/** The catalog of complete backups (their completion markers). */
export { listBackups } from './archive/backup-catalog';
export type { BackupCatalogEntry, CatalogObject, ListBackupsOptions } from './archive/backup-catalog';
/** Restore of a base backup with recovery settings (PITR, standby): see restoreBackup's TSDoc. */
export {
  restoreBackup,
  checkRestoreTarget,
  listArchivedSegments,
  defaultCliPath,
  RESTORE_INCOMPLETE_MARKER,
} from './restore/restore-backup';
export type {
  RestoreBackupOptions,
  RestoreBackupResult,
  ArchiveFetchSpec,
  StandbyOptions,
} from './restore/restore-backup';
/** Recovery settings (pure) and the restore planner (which backup, is the target inside the window). */
export {
  buildRecoveryConfig,
  archiveFetchCommand,
  quoteConfigValue,
  RECOVERY_DEFAULTS,
} from './restore/recovery-config';
export type {
  RecoveryTarget,
  RecoveryTargetAction,
  RecoveryTimeline,
  RecoveryOptions,
  RecoveryConfig,
  RecoveryConfigInput,
  StandbySettings,
} from './restore/recovery-config';
export { planRestore, walRanges, recoverableEnd, RecoveryTargetError } from './restore/recovery-target';
export type {
  RestorePlan,
  RestorePlanInput,
  WalRange,
  BackupSummary,
  PlannerBackup,
  PlannerSegment,
} from './restore/recovery-target';
export { createStandbySlot } from './restore/standby';
/** Table-level restore through a scratch cluster: see restoreTable's TSDoc. */
export { restoreTable } from './restore/restore-table';
export type { RestoreTableOptions, RestoreTableResult } from './restore/restore-table';
export { readTableDefinition, buildTableDdl } from './restore/table-definition';
export type { TableDefinition, TableDdl, ColumnDefinition, OwnedSequence } from './restore/table-definition';
export { startScratchCluster, binariesForMajor } from './restore/scratch-cluster';
export type { ScratchCluster, ScratchClusterOptions } from './restore/scratch-cluster';
/** Continuous WAL archiving over START_REPLICATION into a repository: see startWalArchiver's TSDoc. */
export { startWalArchiver, WAL_ARCHIVER_DEFAULTS } from './archive/wal-archiver';
export type {
  WalArchiverOptions,
  WalArchiverHandle,
  WalArchiverStats,
  WalArchiverResult,
  WalArchiverState,
} from './archive/wal-archiver';
/** The durable bytes of a partial WAL segment (its `.partial` object and sequenced chunks). */
export { readArchivedPartial, planPartialAssembly, writtenExtent } from './archive/wal-partial';
export type { ArchivedPartial, PartialAssemblyPlan, PartialPiece } from './archive/wal-partial';
/** The physical WAL stream under the archiver and `-X stream`. */
export { WalStream, startWalStream, WAL_STREAM_DEFAULTS } from './replication/wal-stream';
export type {
  WalStreamOptions,
  WalStreamEvent,
  WalStreamEnd,
  WalStreamPositions,
} from './replication/wal-stream';
/** Backup verification building blocks: manifest, CRC-32C, tar scanning, backup_label, WAL headers, codecs. */
export { parseBackupManifest, createFileChecksummer } from './verify/manifest';
export type {
  BackupManifest,
  ManifestFile,
  ManifestWalRange,
  ManifestChecksumAlgorithm,
  FileChecksummer,
} from './verify/manifest';
export { crc32c, crc32cInit, crc32cUpdate, crc32cFinal, crc32cManifestHex } from './verify/crc32c';
export {
  scanTar,
  tarTerminator,
  normaliseTarName,
  verifyArchiveAgainstManifest,
  VERIFY_IGNORED_PATHS,
} from './archive/tar-scan';
export type {
  TarMember,
  TarMemberType,
  ScanTarOptions,
  VerifyArchiveOptions,
  ArchiveVerifyReport,
  ArchiveFileMismatch,
} from './archive/tar-scan';
export { parseBackupLabel } from './archive/backup-label';
export type { BackupLabel } from './archive/backup-label';
export {
  checkWalSegmentHeader,
  readWalSysid,
  readWalPageHeader,
  WalSegmentCheckStream,
  WAL_PAGE_MAGIC_BY_MAJOR,
  pgMajorForWalMagic,
} from './archive/wal-segment';
export type {
  WalPageHeader,
  CheckWalSegmentOptions,
  WalSegmentHeaderCheck,
  WalSegmentStreamResult,
} from './archive/wal-segment';
export {
  createCompressStream,
  createDecompressStream,
  compressionExtension,
  compressionFromFileName,
  compressionImplementations,
  COMPRESSION_NAMES,
} from './archive/compression';
export type { CompressionName, CompressOptions } from './archive/compression';
