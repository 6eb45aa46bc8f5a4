/**
 * pgark's only public entry point: named exports and types, no logic.
 */
export * from './errors';
export type { Logger, LogFields, PgarkEvent, PgarkEventType, ObserveOptions } from './observe';
export { noopLogger } from './observe';
export * from './lsn';
export type { Storage, ObjectInfo, PutOptions, PutResult, GetOptions, ListOptions, CallOptions } from './storage/storage';
export { findServerBinaries } from './local-server/find-binaries';
export type { ServerBinaries, FindServerBinariesOptions, BinariesSource } from './local-server/find-binaries';
