/** Every CLI command, in the order `pgark --help` lists them. Add a command's register function here. */
import type { Command } from 'commander';
import { registerArchiveFetch } from './archive-fetch';
import { registerArchivePush } from './archive-push';

export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [registerArchivePush, registerArchiveFetch];
