/**
 * local-server: finds PostgreSQL server binaries and runs a local server (initdb, start, stop,
 * promote) as an unprivileged OS user. Owns no backup logic; restore, table restore, drills and the
 * test harness build on it. Must not import protocol/connection/replication code.
 */
export * from './find-binaries';
export * from './os-user';
export * from './server-control';
