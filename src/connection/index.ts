/**
 * src/connection: a physical replication connection (startup, authentication and TLS through
 * node-postgres, then pgark's own pull-driven framing with backpressure). It builds on src/protocol
 * and must not know any replication command's semantics (those live in src/replication).
 */
export * from './replication-connection';
export { parseConnectionString } from './conninfo';
