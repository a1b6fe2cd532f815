/**
 * Framing of the GDB remote serial protocol (GDB manual, "Remote Protocol",
 * "Overview"): `$data#cs` packets whose checksum is the sum of the data bytes
 * modulo 256 in two hex digits; `}` escapes (the next byte XOR 0x20) for
 * `#`, `$`, `}` and `*`; run-length encoding (`X*n` repeats X another
 * `n - 29` times); the `+`/`-` acknowledgements and the 0x03 interrupt byte.
 *
 * Pure: no I/O. Payloads are bytes; protocol text is handled as latin1
 * strings, one character per byte.
 */

/** The byte gdb sends, outside any packet, to interrupt a running target (Ctrl-C). */
export const INTERRUPT_BYTE = 0x03;

const DOLLAR = 0x24;
const HASH = 0x23;
const ESCAPE = 0x7d;
const STAR = 0x2a;
const PLUS = 0x2b;
const MINUS = 0x2d;
const ESCAPE_XOR = 0x20;

/** Largest payload (raw bytes between `$` and `#`) the decoder accepts by default. */
export const DEFAULT_MAX_PACKET_BYTES = 0x4000;

/** The packet checksum: the sum of `bytes` modulo 256. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) sum = (sum + bytes[i]!) & 0xff;
  return sum;
}

/** Bytes of a latin1 string (one byte per character). Throws RangeError on a character above U+00FF. */
export function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new RangeError(`character U+${code.toString(16)} at ${i} is not one byte`);
    bytes[i] = code;
  }
  return bytes;
}

/** A latin1 string with one character per byte of `bytes`. */
export function latin1Text(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

const HEX_DIGITS = '0123456789abcdef';

/** Lower-case hex, two digits per byte, in order. */
export function encodeHex(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    text += HEX_DIGITS[byte >> 4]! + HEX_DIGITS[byte & 0xf]!;
  }
  return text;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  return -1;
}

/** Bytes from hex text (either case); null if the length is odd or a character is not a hex digit. */
export function decodeHex(text: string): Uint8Array | null {
  if (text.length % 2 !== 0) return null;
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    const high = hexValue(text.charCodeAt(2 * i));
    const low = hexValue(text.charCodeAt(2 * i + 1));
    if (high < 0 || low < 0) return null;
    bytes[i] = (high << 4) | low;
  }
  return bytes;
}

function needsEscape(byte: number): boolean {
  return byte === DOLLAR || byte === HASH || byte === ESCAPE || byte === STAR;
}

/** `bytes` with `$`, `#`, `}` and `*` each replaced by `}` and the byte XOR 0x20. */
export function escapeBinary(bytes: Uint8Array): Uint8Array {
  let extra = 0;
  for (let i = 0; i < bytes.length; i++) if (needsEscape(bytes[i]!)) extra++;
  if (extra === 0) return bytes;
  const out = new Uint8Array(bytes.length + extra);
  let o = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (needsEscape(byte)) {
      out[o++] = ESCAPE;
      out[o++] = byte ^ ESCAPE_XOR;
    } else {
      out[o++] = byte;
    }
  }
  return out;
}

/**
 * The payload that the raw bytes between `$` and `#` stand for: escapes undone
 * and run-length encoding expanded. Null if the data is malformed (a `}` or
 * `*` at the end, a `*` with nothing before it, a repeat count outside
 * 32..126).
 */
export function decodePayload(raw: Uint8Array): Uint8Array | null {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i]!;
    if (byte === ESCAPE) {
      if (i + 1 >= raw.length) return null;
      out.push(raw[++i]! ^ ESCAPE_XOR);
    } else if (byte === STAR) {
      if (i + 1 >= raw.length || out.length === 0) return null;
      const count = raw[++i]!;
      if (count < 32 || count > 126) return null;
      const repeated = out[out.length - 1]!;
      for (let n = 0; n < count - 29; n++) out.push(repeated);
    } else {
      out.push(byte);
    }
  }
  return Uint8Array.from(out);
}

/** A whole frame `$payload#cs` for `payload` (a latin1 string or bytes), escaping as needed. */
export function encodePacket(payload: string | Uint8Array): Uint8Array {
  const body = escapeBinary(typeof payload === 'string' ? latin1Bytes(payload) : payload);
  const sum = checksum(body);
  const frame = new Uint8Array(body.length + 4);
  frame[0] = DOLLAR;
  frame.set(body, 1);
  frame[body.length + 1] = HASH;
  frame[body.length + 2] = HEX_DIGITS.charCodeAt(sum >> 4);
  frame[body.length + 3] = HEX_DIGITS.charCodeAt(sum & 0xf);
  return frame;
}

/** What the decoder found in the byte stream. */
export type DecoderEvent =
  /** A packet with a good checksum: its payload, unescaped and expanded. */
  | { readonly kind: 'packet'; readonly data: Uint8Array }
  /** A packet that must be refused (`-`): bad checksum, malformed data, or longer than the limit. */
  | { readonly kind: 'bad-packet'; readonly reason: 'checksum' | 'malformed' | 'too-long' }
  /** `+`: the peer received our last packet. */
  | { readonly kind: 'ack' }
  /** `-`: the peer wants our last packet again. */
  | { readonly kind: 'nack' }
  /** The 0x03 byte outside a packet. */
  | { readonly kind: 'interrupt' };

const enum State {
  IDLE,
  DATA,
  CHECKSUM_HIGH,
  CHECKSUM_LOW,
}

/**
 * An incremental decoder: feed it the byte stream in chunks of any size, split
 * anywhere, and it returns the events completed by each chunk. Bytes outside
 * packets other than `+`, `-` and 0x03 are ignored; a `$` inside a packet
 * starts over with a new packet (the old one was cut off).
 */
export class PacketDecoder {
  private state = State.IDLE;
  private readonly raw: Uint8Array;
  private length = 0;
  private overflow = false;
  private sum = 0;
  private sentHigh = 0;
  private events: DecoderEvent[] = [];

  /** @param maxPacketBytes the largest raw payload accepted; longer packets are reported as `too-long`. */
  constructor(readonly maxPacketBytes: number = DEFAULT_MAX_PACKET_BYTES) {
    this.raw = new Uint8Array(maxPacketBytes);
  }

  /** Consumes `chunk` and returns the events it completed, in stream order. */
  push(chunk: Uint8Array): DecoderEvent[] {
    for (let i = 0; i < chunk.length; i++) this.consume(chunk[i]!);
    const events = this.events;
    this.events = [];
    return events;
  }

  private startPacket(): void {
    this.state = State.DATA;
    this.length = 0;
    this.overflow = false;
    this.sum = 0;
  }

  private consume(byte: number): void {
    switch (this.state) {
      case State.IDLE:
        if (byte === DOLLAR) this.startPacket();
        else if (byte === PLUS) this.events.push({ kind: 'ack' });
        else if (byte === MINUS) this.events.push({ kind: 'nack' });
        else if (byte === INTERRUPT_BYTE) this.events.push({ kind: 'interrupt' });
        return;
      case State.DATA:
        if (byte === HASH) {
          this.state = State.CHECKSUM_HIGH;
        } else if (byte === DOLLAR) {
          this.startPacket();
        } else {
          this.sum = (this.sum + byte) & 0xff;
          if (this.length < this.raw.length) this.raw[this.length++] = byte;
          else this.overflow = true;
        }
        return;
      case State.CHECKSUM_HIGH:
        this.sentHigh = hexValue(byte);
        this.state = State.CHECKSUM_LOW;
        return;
      case State.CHECKSUM_LOW:
        this.state = State.IDLE;
        this.finishPacket(this.sentHigh, hexValue(byte));
        return;
    }
  }

  private finishPacket(high: number, low: number): void {
    if (high < 0 || low < 0) {
      this.events.push({ kind: 'bad-packet', reason: 'malformed' });
    } else if (((high << 4) | low) !== this.sum) {
      this.events.push({ kind: 'bad-packet', reason: 'checksum' });
    } else if (this.overflow) {
      this.events.push({ kind: 'bad-packet', reason: 'too-long' });
    } else {
      const data = decodePayload(this.raw.subarray(0, this.length));
      this.events.push(data === null ? { kind: 'bad-packet', reason: 'malformed' } : { kind: 'packet', data });
    }
  }
}
