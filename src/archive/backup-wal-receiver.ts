/**
 * The WAL of a self-contained base backup (`pg_basebackup -X stream`): on a second replication
 * connection, through a temporary slot created with RESERVE_WAL before BASE_BACKUP (protocol notes
 * §8.1), stream from the segment of the backup's start LSN until the backup's end LSN, and store
 * each segment as one object under `backups/<id>/wal/`. The last segment is zero-padded to the
 * segment size, as pg_basebackup's walmethods do (pad_to_size), so that recovery sees whole files.
 *
 * A timeline switch (a standby backup whose end timeline differs, §8.5) continues on the next
 * timeline from the segment of its start, and stores the timeline's history file; the old
 * timeline's last, partial segment is not stored (the new timeline's copy of it holds the same WAL
 * up to the switch point).
 */
import { formatLsn, walFileName, lsnToSegmentNumber, segmentStartOf, type Lsn } from '../lsn';
import { AbortError, ReplicationError } from '../errors';
import type { ReplicationConnection } from '../connection/replication-connection';
import { startWalStream, type WalStream } from '../replication/wal-stream';
import { timelineHistory } from '../replication/timeline-history';
import { identifySystem } from '../replication/identify-system';
import type { ObserveOptions } from '../observe';
import type { Storage } from '../storage/storage';
import { ObjectUpload } from './object-upload';
import { backupWalKey } from './repo-layout';
import type { CatalogObject } from './backup-catalog';

export interface BackupWalReceiverOptions extends ObserveOptions {
  connection: ReplicationConnection;
  storage: Storage;
  stanza: string;
  backupId: string;
  slot: string;
  walSegmentSize: number;
  signal?: AbortSignal;
}

export class BackupWalReceiver {
  private readonly o: BackupWalReceiverOptions;
  private endLsn: Lsn | undefined;
  private stream: WalStream | undefined;
  private current: { name: string; upload: ObjectUpload; written: number } | undefined;
  readonly objects: CatalogObject[] = [];
  /** Keys this receiver started to write (for cleanup). */
  readonly keys: string[] = [];
  private running: Promise<void> | undefined;

  constructor(options: BackupWalReceiverOptions) {
    this.o = options;
  }

  /** Starts streaming from the segment of `startLsn` on `timeline`; runs in the background until `finish`. */
  start(startLsn: Lsn, timeline: number): void {
    this.running = this.run(segmentStartOf(startLsn, this.o.walSegmentSize), timeline);
    this.running.catch(() => undefined);
  }

  /** Tells the receiver where the backup ended and waits until every segment up to it is durable. */
  async finish(endLsn: Lsn): Promise<CatalogObject[]> {
    this.endLsn = endLsn;
    this.stream?.setEndLsn(endLsn);
    await this.running;
    return this.objects;
  }

  /** Stops at once (failure path); pending uploads are aborted. */
  async abort(reason: unknown): Promise<void> {
    this.stream?.stop();
    if (this.current) await this.current.upload.abort(reason);
    this.o.connection.destroy();
    await this.running?.catch(() => undefined);
  }

  private async run(startLsn: Lsn, timeline: number): Promise<void> {
    let tli = timeline;
    let pos = startLsn;
    // A cascading walsender (the backup of a standby) on PG 14 and older refuses START_REPLICATION
    // with "IDENTIFY_SYSTEM has not been run before START_REPLICATION": walsender.c sets its
    // ThisTimeLineID only in IDENTIFY_SYSTEM there. pg_basebackup's streamer runs it first too
    // (receivelog.c ReceiveXlogStream); harmless on every version.
    await identifySystem(this.o.connection);
    // receivelog.c: a timeline after the first needs its history file next to the segments.
    if (tli > 1) await this.storeHistory(tli);
    for (;;) {
      if (this.o.signal?.aborted) throw new AbortError('base backup wal streaming aborted');
      const stream = await startWalStream({
        connection: this.o.connection,
        startLsn: pos,
        timeline: tli,
        slot: this.o.slot,
        endLsn: this.endLsn,
        logger: this.o.logger,
        onEvent: this.o.onEvent,
        signal: this.o.signal,
      });
      this.stream = stream;
      if (this.endLsn !== undefined) stream.setEndLsn(this.endLsn);
      for await (const ev of stream) {
        if (ev.type !== 'xlogdata') continue;
        await this.write(tli, ev.startLsn, ev.data);
        stream.reportWritten(ev.endLsn);
      }
      const end = stream.end;
      if (end?.reason === 'end-of-timeline') {
        // Drop the old timeline's partial segment; continue on the next timeline from its segment start.
        if (this.current) {
          await this.current.upload.abort(new AbortError('partial segment of an ended timeline'));
          this.current = undefined;
        }
        tli = end.nextTimeline;
        pos = segmentStartOf(end.nextStartLsn, this.o.walSegmentSize);
        await this.storeHistory(tli);
        continue;
      }
      if (this.endLsn === undefined || stream.positions().receivedLsn < this.endLsn) {
        throw new ReplicationError(
          'REPLICATION_WAL_GAP',
          `wal streaming for the backup ended at ${formatLsn(stream.positions().receivedLsn)} before the backup's end`,
        );
      }
      break;
    }
    // Pad the last segment to the segment size (pg_basebackup walmethods pad_to_size).
    if (this.current) {
      const cur = this.current;
      let rest = this.o.walSegmentSize - cur.written;
      const zeros = Buffer.alloc(Math.min(rest, 1024 * 1024));
      while (rest > 0) {
        const n = Math.min(rest, zeros.length);
        await cur.upload.write(zeros.subarray(0, n));
        rest -= n;
      }
      await this.closeSegment();
    }
  }

  private async storeHistory(tli: number): Promise<void> {
    const hist = await timelineHistory(this.o.connection, tli);
    const key = backupWalKey(this.o.stanza, this.o.backupId, hist.fileName);
    this.keys.push(key);
    const r = await this.o.storage.put(key, hist.content, {
      contentLength: hist.content.length,
      signal: this.o.signal,
    });
    this.objects.push({ kind: 'wal', name: `wal/${hist.fileName}`, key, size: r.size, sha256: r.sha256 });
  }

  private async write(tli: number, startLsn: Lsn, data: Buffer): Promise<void> {
    const seg = this.o.walSegmentSize;
    let lsn = startLsn;
    let off = 0;
    while (off < data.length) {
      const segno = lsnToSegmentNumber(lsn, seg);
      const name = walFileName(tli, segno, seg);
      if (!this.current || this.current.name !== name) {
        if (this.current) await this.closeSegment();
        const key = backupWalKey(this.o.stanza, this.o.backupId, name);
        this.keys.push(key);
        this.current = {
          name,
          upload: new ObjectUpload(this.o.storage, key, { sizeHint: seg, signal: this.o.signal }),
          written: 0,
        };
      }
      const inSeg = Number(lsn % BigInt(seg));
      const n = Math.min(data.length - off, seg - inSeg);
      await this.current.upload.write(data.subarray(off, off + n));
      this.current.written += n;
      off += n;
      lsn += BigInt(n);
      if (this.current.written === seg) await this.closeSegment();
    }
  }

  private async closeSegment(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    const r = await cur.upload.end();
    this.objects.push({
      kind: 'wal',
      name: `wal/${cur.name}`,
      key: cur.upload.key,
      size: r.size,
      sha256: r.sha256,
    });
  }
}
