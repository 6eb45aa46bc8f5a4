/** Every CLI command, in the order `pgark --help` lists them. Add a command's register function here. */
import type { Command } from 'commander';
import { registerArchiveFetch } from './archive-fetch';
import { registerArchivePush } from './archive-push';
import { registerBackup } from './backup';
import { registerRestore } from './restore';
import { registerRestoreTable } from './restore-table';
import { registerWalArchive } from './wal-archive';

export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [
  registerBackup,
  registerRestore,
  registerRestoreTable,
  registerArchivePush,
  registerArchiveFetch,
  registerWalArchive,
];
