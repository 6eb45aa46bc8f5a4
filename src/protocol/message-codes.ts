/**
 * Message type bytes of the PostgreSQL v3 frontend/backend protocol (protocol-message-formats.html)
 * and of the replication sub-protocol carried inside CopyData (protocol-replication.html).
 */

/** Backend (server → client) message codes. */
export const BackendCode = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  CommandComplete: 0x43, // 'C'
  CopyBothResponse: 0x57, // 'W'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyInResponse: 0x47, // 'G'
  CopyOutResponse: 0x48, // 'H'
  DataRow: 0x44, // 'D'
  EmptyQueryResponse: 0x49, // 'I'
  ErrorResponse: 0x45, // 'E'
  NoticeResponse: 0x4e, // 'N'
  NotificationResponse: 0x41, // 'A'
  ParameterStatus: 0x53, // 'S'
  ReadyForQuery: 0x5a, // 'Z'
  RowDescription: 0x54, // 'T'
} as const;
export type BackendCodeName = keyof typeof BackendCode;

/** Frontend (client → server) message codes used by a replication client. */
export const FrontendCode = {
  Query: 0x51, // 'Q'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyFail: 0x66, // 'f'
  Terminate: 0x58, // 'X'
} as const;

/** Type bytes of the first payload byte of a CopyData message in START_REPLICATION (walsender.c). */
export const ReplicationCode = {
  /** XLogData, server → client (XLogSendPhysical). */
  XLogData: 0x77, // 'w'
  /** Primary keepalive, server → client (WalSndKeepalive). */
  PrimaryKeepalive: 0x6b, // 'k'
  /** Standby status update, client → server (ProcessStandbyReplyMessage). */
  StandbyStatusUpdate: 0x72, // 'r'
  /** Hot standby feedback, client → server (not used by a physical archiver). */
  HotStandbyFeedback: 0x68, // 'h'
} as const;

/** Type bytes of the first payload byte of a CopyData message in a PG15+ BASE_BACKUP (basebackup_copy.c). */
export const BaseBackupCode = {
  /** A new archive begins: cstring name, cstring spclocation. */
  NewArchive: 0x6e, // 'n'
  /** Archive or manifest data. */
  Data: 0x64, // 'd'
  /** Progress: Int64 bytes done. */
  Progress: 0x70, // 'p'
  /** The manifest follows. */
  Manifest: 0x6d, // 'm'
} as const;

/** Human-readable name of a backend code, for error messages. */
export function backendCodeName(code: number): string {
  for (const [name, value] of Object.entries(BackendCode)) {
    if (value === code) return name;
  }
  return `0x${code.toString(16).padStart(2, '0')}`;
}
