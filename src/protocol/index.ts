/**
 * src/protocol: the byte layer of the PostgreSQL frontend/backend and replication protocols.
 * Pure: bytes in, typed messages out and back. It must not touch sockets, timers or the event loop,
 * and imports only errors and lsn.
 */
export * from './message-codes';
export * from './message-framer';
export * from './backend-messages';
export * from './replication-messages';
export * from './frontend-messages';
export { BufferReader } from './buffer-reader';
