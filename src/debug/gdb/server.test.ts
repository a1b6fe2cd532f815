import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { DEMO_PROGRAM, FakeTarget } from './fake-target.js';
import { encodePacket, latin1Text } from './packets.js';
import { startGdbServer, type GdbServer } from './server.js';

/** A raw TCP client that collects what the stub sends. */
class Client {
  received = '';
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received += latin1Text(chunk);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  send(data: string): void {
    this.socket.write(Buffer.from(data, 'latin1'));
  }

  packet(payload: string): void {
    this.socket.write(encodePacket(payload));
  }

  /** Waits (at most 5 s) until `done` holds for what was received, then returns and clears it. */
  async until(done: (received: string) => boolean): Promise<string> {
    const deadline = Date.now() + 5000;
    while (!done(this.received)) {
      if (Date.now() > deadline) throw new Error(`timed out; received so far: ${JSON.stringify(this.received)}`);
      if (this.closed) throw new Error(`connection closed; received: ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    const text = this.received;
    this.received = '';
    return text;
  }

  waitClosed(): Promise<string> {
    return this.until(() => this.closed);
  }
}

const frame = (payload: string) => latin1Text(encodePacket(payload));

let server: GdbServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe('GDB stub over TCP', () => {
  it('listens on a free port and answers packets with acknowledgements', async () => {
    server = await startGdbServer(new FakeTarget(DEMO_PROGRAM));
    expect(server.port).toBeGreaterThan(0);
    expect(server.host).toBe('127.0.0.1');
    const client = await Client.open(server.port);
    client.packet('qSupported:swbreak+;hwbreak+');
    const supported = frame('PacketSize=4000;qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+');
    const reply = await client.until((text) => text.endsWith(supported));
    expect(reply).toBe(`+${supported}`);
    client.send('+');
    client.packet('m1000,4');
    expect(await client.until((text) => text.endsWith(frame('48ffc090')))).toBe(`+${frame('48ffc090')}`);
    client.socket.destroy();
  });

  it('interrupts a long continue with the 0x03 byte', async () => {
    const target = new FakeTarget(DEMO_PROGRAM);
    server = await startGdbServer(target, { sliceInstructions: 1000 });
    const client = await Client.open(server.port);
    client.packet('QStartNoAckMode');
    await client.until((text) => text.endsWith(frame('OK')));
    client.send('+');
    client.packet('c1020');
    // Let the guest spin through a number of slices before interrupting it.
    while (target.resumeCalls < 20) await new Promise((resolve) => setTimeout(resolve, 5));
    client.send('\x03');
    expect(await client.until((text) => text.endsWith(frame('T02thread:1;')))).toBe(frame('T02thread:1;'));
    expect(target.instructions).toBe(target.resumeCalls * 1000);
    client.packet(`p10`);
    expect(await client.until((text) => text.length >= frame('2010000000000000').length)).toBe(frame('2010000000000000'));
    client.socket.destroy();
  });

  it('serves one client at a time and takes the next once the first has gone', async () => {
    server = await startGdbServer(new FakeTarget(DEMO_PROGRAM));
    const first = await Client.open(server.port);
    first.packet('qC');
    await first.until((text) => text.endsWith(frame('QC1')));
    const second = await Client.open(server.port);
    await second.waitClosed();
    expect(second.closed).toBe(true);
    first.packet('k');
    await first.waitClosed();
    const third = await Client.open(server.port);
    third.packet('qC');
    expect(await third.until((text) => text.endsWith(frame('QC1')))).toBe(`+${frame('QC1')}`);
    third.socket.destroy();
  });

  it('disconnects the client and reports the error when the target throws', async () => {
    const target = new FakeTarget(DEMO_PROGRAM);
    target.readRegisters = () => {
      throw new Error('register file unreadable');
    };
    const errors: unknown[] = [];
    server = await startGdbServer(target, { onError: (error) => errors.push(error) });
    const client = await Client.open(server.port);
    client.packet('g');
    await client.waitClosed();
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toContain('register file unreadable');
  });

  it('disconnects the client on close()', async () => {
    const running = await startGdbServer(new FakeTarget(DEMO_PROGRAM));
    const client = await Client.open(running.port);
    client.packet('qC');
    await client.until((text) => text.endsWith(frame('QC1')));
    await running.close();
    await client.waitClosed();
    expect(client.closed).toBe(true);
  });
});
