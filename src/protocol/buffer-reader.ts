/**
 * A bounds-checked reader over one message body. Every read past the end throws
 * ProtocolError PROTOCOL_MALFORMED_MESSAGE naming the message, so a truncated or lying message can
 * never yield garbage or a RangeError.
 */
import { ProtocolError } from '../errors';

export class BufferReader {
  private offset = 0;

  constructor(
    private readonly buf: Buffer,
    /** Name of the message being read, for error messages. */
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number): void {
    if (n < 0 || this.offset + n > this.buf.length) {
      throw new ProtocolError(
        'PROTOCOL_MALFORMED_MESSAGE',
        `malformed ${this.what}: needs ${n} more bytes at offset ${this.offset}, body has ${this.buf.length}`,
      );
    }
  }

  uint8(): number {
    this.need(1);
    return this.buf.readUInt8(this.offset++);
  }

  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  int64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  uint64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  /** A view of the next n bytes (shares memory with the body). */
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  /** The rest of the body as a view. */
  rest(): Buffer {
    const v = this.buf.subarray(this.offset);
    this.offset = this.buf.length;
    return v;
  }

  /** A NUL-terminated string (UTF-8; replication connections use the server encoding, ASCII in practice). */
  cstring(): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) {
      throw new ProtocolError(
        'PROTOCOL_MALFORMED_MESSAGE',
        `malformed ${this.what}: unterminated string at offset ${this.offset}`,
      );
    }
    const s = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return s;
  }

  /** Fails when bytes are left over: every parse* consumes its body exactly. */
  end(): void {
    if (this.offset !== this.buf.length) {
      throw new ProtocolError(
        'PROTOCOL_MALFORMED_MESSAGE',
        `malformed ${this.what}: ${this.buf.length - this.offset} unexpected trailing bytes`,
      );
    }
  }
}
