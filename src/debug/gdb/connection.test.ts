import { describe, expect, it } from 'vitest';
import { GdbConnection } from './connection.js';
import { DEMO_PROGRAM, FakeTarget } from './fake-target.js';
import { encodePacket, latin1Bytes, latin1Text } from './packets.js';
import { GdbProtocol } from './protocol.js';

/** A connection over a recording transport with a hand-driven scheduler. */
function setup(sliceInstructions = 10) {
  const target = new FakeTarget(DEMO_PROGRAM);
  const written: string[] = [];
  const tasks: Array<() => void> = [];
  let closed = false;
  const connection = new GdbConnection(new GdbProtocol(target, { sliceInstructions }), {
    write: (bytes) => written.push(latin1Text(bytes)),
    schedule: (task) => tasks.push(task),
    close: () => {
      closed = true;
    },
  });
  const send = (data: string) => connection.receive(latin1Bytes(data));
  const packet = (payload: string) => send(latin1Text(encodePacket(payload)));
  /** Everything written since the last call. */
  const output = () => written.splice(0).join('');
  const runTask = () => {
    const task = tasks.shift();
    if (task === undefined) throw new Error('no task scheduled');
    task();
  };
  return { target, connection, send, packet, output, runTask, tasks, isClosed: () => closed };
}

const frame = (payload: string) => latin1Text(encodePacket(payload));

describe('GdbConnection', () => {
  it('acknowledges a packet and sends the reply', () => {
    const { packet, output } = setup();
    packet('qC');
    expect(output()).toBe(`+${frame('QC1')}`);
  });

  it('sends one packet at a time until gdb acknowledges it', () => {
    const { packet, output, send } = setup();
    packet(`qRcmd,${Buffer.from('hello').toString('hex')}`);
    const first = output();
    expect(first.startsWith('+$O')).toBe(true);
    expect(first).not.toContain('OK');
    send('+');
    expect(output()).toBe(frame('OK'));
    send('+');
    expect(output()).toBe('');
  });

  it('sends the packet again on a nack, and nacks a bad checksum', () => {
    const { packet, output, send } = setup();
    packet('qC');
    output();
    send('-');
    expect(output()).toBe(frame('QC1'));
    send('+');
    send('$qC#00');
    expect(output()).toBe('-');
  });

  it('stops acknowledging after QStartNoAckMode', () => {
    const { packet, output, send, connection } = setup();
    packet('QStartNoAckMode');
    expect(output()).toBe(`+${frame('OK')}`);
    expect(connection.acknowledging).toBe(false);
    send('+'); // gdb's acknowledgement of the OK
    packet(`qRcmd,${Buffer.from('hello').toString('hex')}`);
    const replies = output();
    expect(replies.startsWith('$O')).toBe(true);
    expect(replies.endsWith(frame('OK'))).toBe(true);
    send('$qC#00');
    expect(output()).toBe('');
  });

  it('runs a continue one slice per scheduled task, and Ctrl-C stops it with SIGINT', () => {
    const { target, packet, send, output, runTask, tasks } = setup(10);
    packet('QStartNoAckMode');
    output();
    packet('c1020');
    expect(output()).toBe('');
    expect(tasks).toHaveLength(1);
    for (let slice = 0; slice < 4; slice++) runTask();
    expect(target.instructions).toBe(40);
    expect(output()).toBe('');
    send('\x03');
    runTask();
    expect(output()).toBe(frame('T02thread:1;'));
    expect(tasks).toHaveLength(0);
    expect(target.instructions).toBe(40);
  });

  it('keeps packets that arrive while running and answers them after the stop', () => {
    const { packet, send, output, runTask } = setup(10);
    packet('QStartNoAckMode');
    output();
    packet('c1020');
    packet('qC');
    runTask();
    expect(output()).toBe('');
    send('\x03');
    runTask();
    expect(output()).toBe(frame('T02thread:1;') + frame('QC1'));
  });

  it('delivers a stop that the target reports by itself', () => {
    const { packet, output, runTask, send, tasks } = setup(3);
    packet('Z0,1010,1');
    expect(output()).toBe(`+${frame('OK')}`);
    send('+');
    packet('c');
    expect(output()).toBe('+');
    while (tasks.length > 0) runTask();
    expect(output()).toBe(frame('T05thread:1;'));
  });

  it('closes after kill and after detach, and does nothing more once closed', () => {
    const killed = setup();
    killed.packet('k');
    expect(killed.output()).toBe('+');
    expect(killed.isClosed()).toBe(true);
    expect(killed.target.killed).toBe(true);
    killed.packet('qC');
    expect(killed.output()).toBe('');
    const detached = setup();
    detached.packet('D');
    expect(detached.output()).toBe(`+${frame('OK')}`);
    expect(detached.isClosed()).toBe(true);
    expect(detached.connection.open).toBe(false);
  });

  it('stops running slices once the transport is gone', () => {
    const { packet, runTask, connection, target } = setup(10);
    packet('c1020');
    runTask();
    connection.dispose();
    runTask();
    expect(target.instructions).toBe(10);
  });
});
