/**
 * The pgark command-line interface: a thin layer over the public API (it imports only from ../index).
 */
const usage = `usage: pgark <command> [options]

commands (growing with each release):
  backup         take a base backup into a repository
  restore        restore a backup from a repository
  wal-archive    archive WAL continuously through a replication slot
  archive-push   archive_command: push one WAL file
  archive-fetch  restore_command: fetch one WAL file
`;
process.stdout.write(usage);
process.exitCode = process.argv.length > 2 && process.argv[2] !== '--help' ? 2 : 0;
