/**
 * src/replication: one module per replication command, built on src/connection. `*-command.ts`
 * files build validated command text; the others run a command and type its result. Nothing here
 * touches storage.
 */
export * from './identify-system';
export * from './show-setting';
export * from './timeline-history';
export * from './replication-slots';
export { isValidSlotName, assertSlotName } from './slot-name';
