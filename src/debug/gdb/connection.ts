/**
 * One gdb connection, transport-free: bytes in → decoder → protocol → framed
 * replies out, with the `+`/`-` acknowledgements, QStartNoAckMode, and the
 * slices of a running continue. The transport (server.ts for TCP) supplies
 * the {@link ConnectionIo}; tests supply their own.
 *
 * In acknowledgement mode one packet is in flight at a time: the next waits
 * for gdb's `+`, and a `-` sends the same packet again. Packets that arrive
 * while the guest runs (gdb sends none in all-stop mode but the 0x03 byte)
 * are kept and answered after the stop reply.
 */
import { encodePacket, PacketDecoder, type DecoderEvent } from './packets.js';
import type { GdbProtocol } from './protocol.js';

const ACK = Uint8Array.of(0x2b);
const NACK = Uint8Array.of(0x2d);

/** What a connection needs from its transport. */
export interface ConnectionIo {
  /** Sends bytes to gdb. */
  write(bytes: Uint8Array): void;
  /**
   * Runs `task` later, after pending input has been delivered (setImmediate
   * over a socket): a continue runs one slice per task, so Ctrl-C gets in.
   */
  schedule(task: () => void): void;
  /** Ends the connection after the bytes written so far. */
  close(): void;
}

/** A gdb session over one transport connection. */
export class GdbConnection {
  private readonly decoder: PacketDecoder;
  private ackMode = true;
  private unacked: Uint8Array | null = null;
  private readonly outbox: Uint8Array[] = [];
  private readonly inbox: Uint8Array[] = [];
  private closed = false;

  /** @param maxPacketBytes the decoder's packet limit; match the protocol's packetSize. */
  constructor(
    private readonly protocol: GdbProtocol,
    private readonly io: ConnectionIo,
    maxPacketBytes?: number,
  ) {
    this.decoder = new PacketDecoder(maxPacketBytes);
  }

  /** True until {@link dispose} or a kill/detach closed the connection. */
  get open(): boolean {
    return !this.closed;
  }

  /** Whether `+`/`-` acknowledgements are still in use. */
  get acknowledging(): boolean {
    return this.ackMode;
  }

  /** Bytes that arrived from gdb, in any chunking. */
  receive(chunk: Uint8Array): void {
    for (const event of this.decoder.push(chunk)) {
      if (this.closed) return;
      this.onEvent(event);
    }
  }

  /** The transport is gone: stop running slices and sending. */
  dispose(): void {
    this.closed = true;
  }

  private onEvent(event: DecoderEvent): void {
    switch (event.kind) {
      case 'interrupt':
        this.protocol.interrupt();
        return;
      case 'ack':
        if (this.unacked !== null) {
          this.unacked = null;
          this.sendNext();
        }
        return;
      case 'nack':
        if (this.unacked !== null) this.io.write(this.unacked);
        return;
      case 'bad-packet':
        if (this.ackMode) this.io.write(NACK);
        return;
      case 'packet':
        if (this.ackMode) this.io.write(ACK);
        if (this.protocol.running) this.inbox.push(event.data);
        else this.handle(event.data);
        return;
    }
  }

  private handle(packet: Uint8Array): void {
    const result = this.protocol.handle(packet);
    this.sendAll(result.replies);
    switch (result.effect) {
      case 'none':
        return;
      case 'no-ack':
        this.ackMode = false;
        this.unacked = null;
        this.flush();
        return;
      case 'close':
        this.flush();
        this.closed = true;
        this.io.close();
        return;
      case 'running':
        this.io.schedule(() => this.runSlice());
        return;
    }
  }

  private runSlice(): void {
    if (this.closed) return;
    const replies = this.protocol.runSlice();
    if (replies === null) {
      this.io.schedule(() => this.runSlice());
      return;
    }
    this.sendAll(replies);
    while (!this.closed && !this.protocol.running && this.inbox.length > 0) {
      this.handle(this.inbox.shift()!);
    }
  }

  private sendAll(payloads: readonly string[]): void {
    for (const payload of payloads) {
      this.outbox.push(encodePacket(payload));
      if (this.unacked === null) this.sendNext();
    }
  }

  private sendNext(): void {
    const frame = this.outbox.shift();
    if (frame === undefined) return;
    this.io.write(frame);
    if (this.ackMode) this.unacked = frame;
    else this.flush();
  }

  /** Writes every queued frame without waiting for acknowledgements. */
  private flush(): void {
    for (let frame = this.outbox.shift(); frame !== undefined; frame = this.outbox.shift()) this.io.write(frame);
  }
}
