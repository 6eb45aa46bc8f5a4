/**
 * pgark's only public entry point: named exports and types, no logic.
 */
export * from './errors';
export type { Logger, LogFields, PgarkEvent, PgarkEventType, ObserveOptions } from './observe';
export { noopLogger } from './observe';
export * from './lsn';
export { ReplicationConnection, CONNECTION_DEFAULTS, describeTarget } from './connection/replication-connection';
export type { ReplicationConnectionOptions, SslMode, TlsOptions, CommandEvent, CommandStream, QueryResult } from './connection/replication-connection';
export { parseConnectionString } from './connection/conninfo';
export * from './replication/index';
export type { Storage, ObjectInfo, PutOptions, PutResult, GetOptions, ListOptions, CallOptions } from './storage/storage';
export { findServerBinaries } from './local-server/find-binaries';
export type { ServerBinaries, FindServerBinariesOptions, BinariesSource } from './local-server/find-binaries';
