import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DEMO_PROGRAM, FakeTarget } from './fake-target.js';
import { decodeHex, encodeHex, encodePacket, latin1Bytes, latin1Text, PacketDecoder } from './packets.js';
import { describeStop, GdbProtocol, type ProtocolOptions, type ProtocolResult } from './protocol.js';
import { GDB_REGISTER, REGISTER_FILE_BYTES, X86_64_TARGET_XML } from './target-description.js';

function setup(program: Uint8Array = DEMO_PROGRAM, options: ProtocolOptions = {}) {
  const target = new FakeTarget(program);
  const protocol = new GdbProtocol(target, { sliceInstructions: 5, ...options });
  const ask = (packet: string | Uint8Array): ProtocolResult =>
    protocol.handle(typeof packet === 'string' ? latin1Bytes(packet) : packet);
  /** The single reply to a packet that neither runs nor closes. */
  const one = (packet: string): string => {
    const result = ask(packet);
    expect(result.effect).toBe('none');
    expect(result.replies).toHaveLength(1);
    return result.replies[0]!;
  };
  /** Continues with `packet` and runs slices until the stop (bounded). */
  const run = (packet = 'c'): string[] => {
    const result = ask(packet);
    expect(result).toEqual({ replies: [], effect: 'running' });
    for (let slice = 0; slice < 1000; slice++) {
      const replies = protocol.runSlice();
      if (replies !== null) return replies;
    }
    throw new Error('the guest did not stop within 1000 slices');
  };
  const hello = () => one('qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386');
  return { target, protocol, ask, one, run, hello };
}

/** A register value as the little-endian hex of the `g`/`p` packets. */
function le(value: bigint, bytes: number): string {
  let hex = '';
  for (let i = 0; i < bytes; i++) hex += ((value >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, '0');
  return hex;
}

const hexText = (text: string): string => encodeHex(latin1Bytes(text));
const fromHexText = (hex: string): string => latin1Text(decodeHex(hex)!);

describe('GdbProtocol: handshake and queries', () => {
  it('answers qSupported with the stub features', () => {
    const { hello } = setup();
    expect(hello()).toBe('PacketSize=4000;qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;vContSupported+');
  });

  it('serves target.xml in pages: m for more, l for the last', () => {
    const { one } = setup();
    let xml = '';
    for (let offset = 0; ; offset += 0x100) {
      const page = one(`qXfer:features:read:target.xml:${offset.toString(16)},100`);
      xml += page.slice(1);
      if (page[0] === 'l') break;
      expect(page[0]).toBe('m');
      expect(page.length).toBe(0x101);
    }
    expect(xml).toBe(X86_64_TARGET_XML);
    expect(one(`qXfer:features:read:target.xml:${X86_64_TARGET_XML.length.toString(16)},100`)).toBe('l');
    expect(one('qXfer:features:read:target.xml:0,ffff')).toBe(`l${X86_64_TARGET_XML}`);
    expect(one('qXfer:features:read:other.xml:0,100')).toBe('E00');
    expect(one('qXfer:features:read:target.xml:zz,100')).toBe('E01');
    expect(one('qXfer:auxv:read::0,100')).toBe('');
  });

  it('reports one thread', () => {
    const { one } = setup();
    expect(one('qC')).toBe('QC1');
    expect(one('qfThreadInfo')).toBe('m1');
    expect(one('qsThreadInfo')).toBe('l');
    expect(one('qAttached')).toBe('1');
    expect(one('Hg0')).toBe('OK');
    expect(one('Hc-1')).toBe('OK');
    expect(one('Hg1')).toBe('OK');
    expect(one('Hg2')).toBe('E01');
    expect(one('T1')).toBe('OK');
    expect(one('T2')).toBe('E01');
  });

  it('gives the empty reply to packets it does not know', () => {
    const { one } = setup();
    for (const packet of ['qTStatus', 'vMustReplyEmpty', 'QPassSignals:e', '!', 'qOffsets', 'bc', 'vFile:open:']) {
      expect(one(packet)).toBe('');
    }
  });

  it('switches to no-ack mode on QStartNoAckMode', () => {
    const { ask } = setup();
    expect(ask('QStartNoAckMode')).toEqual({ replies: ['OK'], effect: 'no-ack' });
  });

  it('reports the initial stop as SIGTRAP on thread 1', () => {
    const { one } = setup();
    expect(one('?')).toBe('T05thread:1;');
  });
});

describe('GdbProtocol: registers', () => {
  it('returns all registers in description order from g', () => {
    const { one, target } = setup();
    target.set('rax', 0x1122334455667788n);
    target.set('xmm1', 0x00112233445566778899aabbccddeeffn);
    const g = one('g');
    expect(g).toHaveLength(REGISTER_FILE_BYTES * 2);
    expect(g.slice(0, 16)).toBe('8877665544332211');
    expect(g.slice(16 * 16, 17 * 16)).toBe(le(0x1000n, 8)); // rip after 16 general registers
    expect(g.slice(17 * 16, 17 * 16 + 8)).toBe('02020000'); // eflags, 32 bits
    const xmm1 = (16 * 8 + 8 + 4 + 6 * 4 + 8 * 10 + 8 * 4 + 16) * 2;
    expect(g.slice(xmm1, xmm1 + 32)).toBe('ffeeddccbbaa99887766554433221100');
    expect(g.slice(-16)).toBe(le(0x500n, 8)); // efer is last
  });

  it('writes registers with G, only those that changed', () => {
    const { one, target } = setup();
    const g = one('g');
    const changed = le(0xdeadbeefn, 8) + g.slice(16);
    expect(one(`G${changed}`)).toBe('OK');
    expect(target.get('rax')).toBe(0xdeadbeefn);
    expect(target.get('rip')).toBe(0x1000n);
    // The fake refuses x87 writes: a G that changes st0 is refused...
    const st0 = (16 * 8 + 8 + 4 + 6 * 4) * 2;
    const withSt0 = changed.slice(0, st0) + '01' + changed.slice(st0 + 2);
    expect(one(`G${withSt0}`)).toBe('E02');
    // ...and one that leaves it as it is is not.
    expect(one(`G${changed}`)).toBe('OK');
    expect(one(`G${changed.slice(2)}`)).toBe('E01');
    expect(one('Gzz')).toBe('E01');
  });

  it('reads and writes single registers with p and P', () => {
    const { one, target } = setup();
    expect(one(`p${GDB_REGISTER.rip.toString(16)}`)).toBe(le(0x1000n, 8));
    expect(one(`p${GDB_REGISTER.mxcsr.toString(16)}`)).toBe(le(0x1f80n, 4));
    expect(one(`p${GDB_REGISTER.st0.toString(16)}`)).toBe('0'.repeat(20));
    expect(one(`p${GDB_REGISTER.xmm15.toString(16)}`)).toBe('0'.repeat(32));
    expect(one(`p${GDB_REGISTER.cr0.toString(16)}`)).toBe(le(0x80000011n, 8));
    expect(one('p42')).toBe('E01');
    expect(one('pzz')).toBe('E01');
    expect(one(`P${GDB_REGISTER.rdi.toString(16)}=${le(0x2000n, 8)}`)).toBe('OK');
    expect(target.get('rdi')).toBe(0x2000n);
    expect(one(`P${GDB_REGISTER.eflags.toString(16)}=${le(0x246n, 4)}`)).toBe('OK');
    expect(target.get('eflags')).toBe(0x246n);
    expect(one(`P${GDB_REGISTER.rdi.toString(16)}=${le(1n, 4)}`)).toBe('E01');
    expect(one(`P${GDB_REGISTER.st0.toString(16)}=${'0'.repeat(20)}`)).toBe('E02');
    expect(one(`P42=${le(1n, 8)}`)).toBe('E01');
    expect(one('P10')).toBe('E01');
  });
});

describe('GdbProtocol: memory', () => {
  it('reads memory with m, partially at the end of mapped memory', () => {
    const { one } = setup();
    expect(one('m1000,4')).toBe('48ffc090');
    expect(one('mfffe,4')).toBe('0000');
    expect(one('m10000,1')).toBe('E02');
    expect(one('m1000')).toBe('E01');
  });

  it('caps a read at what one reply can hold', () => {
    const { one } = setup(DEMO_PROGRAM, { packetSize: 0x40 });
    expect(one('m1000,100')).toHaveLength(0x40);
  });

  it('writes memory with M (hex) and X (binary)', () => {
    const { one, ask, target } = setup();
    expect(one('M2000,3:0a0b0c')).toBe('OK');
    expect(Array.from(target.memory.subarray(0x2000, 0x2003))).toEqual([0x0a, 0x0b, 0x0c]);
    expect(one('M2000,2:0a')).toBe('E01');
    expect(one('Mffff,2:0102')).toBe('E02');
    const binary = Uint8Array.from([...latin1Bytes('X3000,5:'), 0x23, 0x24, 0x7d, 0x2a, 0x00]);
    expect(ask(binary).replies).toEqual(['OK']);
    expect(Array.from(target.memory.subarray(0x3000, 0x3005))).toEqual([0x23, 0x24, 0x7d, 0x2a, 0x00]);
    expect(one('X1000,0:')).toBe('OK');
    expect(one('X1000,2:a')).toBe('E01');
  });

  it('reads back what X wrote, through framing and escaping (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xff00 }), fc.uint8Array({ minLength: 1, maxLength: 200 }), (address, data) => {
        const { one, ask } = setup();
        const header = latin1Bytes(`X${address.toString(16)},${data.length.toString(16)}:`);
        const frame = encodePacket(Uint8Array.from([...header, ...data]));
        const [event] = new PacketDecoder().push(frame);
        expect(event?.kind).toBe('packet');
        if (event?.kind !== 'packet') return;
        const end = Math.min(address + data.length, 0x10000);
        const fits = address + data.length <= 0x10000;
        expect(ask(event.data).replies).toEqual([fits ? 'OK' : 'E02']);
        if (fits) expect(one(`m${address.toString(16)},${data.length.toString(16)}`)).toBe(encodeHex(data));
        else expect(one(`m${address.toString(16)},${data.length.toString(16)}`)).toHaveLength((end - address) * 2);
      }),
      { numRuns: 100 },
    );
  });
});

describe('GdbProtocol: running and stopping', () => {
  it('steps one instruction with s and vCont;s', () => {
    const { one, target } = setup();
    expect(one('s')).toBe('T05thread:1;');
    expect(target.get('rip')).toBe(0x1003n);
    expect(one('vCont;s:1')).toBe('T05thread:1;');
    expect(target.get('rip')).toBe(0x1004n);
    expect(one('S05')).toBe('T05thread:1;');
    expect(target.get('rip')).toBe(0x1005n);
    expect(one('s1010')).toBe('T05thread:1;');
    expect(target.get('rip')).toBe(0x1013n);
  });

  it('continues to a software breakpoint and reports swbreak when gdb asked for it', () => {
    const { one, run, target, hello } = setup();
    hello();
    expect(one('Z0,1010,1')).toBe('OK');
    expect(run()).toEqual(['T05thread:1;swbreak:;']);
    expect(target.get('rip')).toBe(0x1010n);
    expect(target.get('rax')).toBe(1n);
    expect(one('?')).toBe('T05thread:1;swbreak:;');
    expect(one('z0,1010,1')).toBe('OK');
    expect(one('z0,1010,1')).toBe('E02');
    expect(describeStop({ kind: 'breakpoint', type: 'sw', address: 0x1010n })).toBe('software breakpoint at 0x1010');
  });

  it('reports a plain SIGTRAP for a breakpoint when gdb did not announce swbreak', () => {
    const { one, run } = setup();
    expect(one('Z0,1010,1')).toBe('OK');
    expect(run()).toEqual(['T05thread:1;']);
  });

  it('reports hwbreak for a hardware breakpoint, and vCont picks the action for thread 1', () => {
    const { one, run, target, hello } = setup();
    hello();
    expect(one('Z1,1015,1')).toBe('OK');
    expect(one('Z1,1015,2')).toBe('E02');
    expect(run('vCont;s:2;c')).toEqual(['T05thread:1;hwbreak:;']);
    expect(target.get('rip')).toBe(0x1015n);
  });

  it('reports write, read and access watchpoints with the data address', () => {
    const { one, run, target } = setup();
    expect(one(`P${GDB_REGISTER.rdi.toString(16)}=${le(0x2000n, 8)}`)).toBe('OK');
    expect(one('Z2,2000,1')).toBe('OK');
    expect(one('Z3,2000,1')).toBe('OK');
    expect(run()).toEqual(['T05thread:1;watch:2000;']);
    expect(target.get('rip')).toBe(0x101an);
    expect(target.memory[0x2000]).toBe(1);
    expect(run()).toEqual(['T05thread:1;rwatch:2000;']);
    expect(target.get('rip')).toBe(0x101cn);
    expect(one('z2,2000,1')).toBe('OK');
    expect(one('z3,2000,1')).toBe('OK');
    expect(one('z3,2000,1')).toBe('E02');
    expect(one(`P${GDB_REGISTER.rip.toString(16)}=${le(0x1018n, 8)}`)).toBe('OK');
    expect(one('Z4,1ffe,4')).toBe('OK');
    expect(run('vCont;c:1')).toEqual(['T05thread:1;awatch:2000;']);
    expect(one('Z5,2000,1')).toBe('');
    expect(one('Z2,2000')).toBe('E01');
  });

  it('stops on a VM exit with a SIGTRAP, prints the reason and keeps it for monitor stop-reason', () => {
    const { ask, run, target } = setup();
    expect(ask(`qRcmd,${hexText('stop-on-cpuid on')}`).replies).toEqual(['OK']);
    expect(target.stopOnCpuid).toBe(true);
    const replies = run();
    expect(replies).toHaveLength(2);
    expect(replies[0]![0]).toBe('O');
    expect(fromHexText(replies[0]!.slice(1))).toBe('VM exit: CPUID (exit reason 10) at 0x1013\n');
    expect(replies[1]).toBe('T05thread:1;');
    const why = ask(`qRcmd,${hexText('stop-reason')}`).replies;
    expect(why.map((reply) => (reply === 'OK' ? reply : fromHexText(reply.slice(1))))).toEqual([
      'VM exit: CPUID (exit reason 10) at 0x1013\n',
      'OK',
    ]);
  });

  it('reports the guest exit with W, and again for later requests', () => {
    const { one, run } = setup();
    // rax: 1, 2, CPUID clears it, 1; [rdi=0] := 1, al := 1; 2; hlt.
    expect(run()).toEqual(['W02']);
    expect(one('?')).toBe('W02');
    expect(one('c')).toBe('W02');
    expect(one('s')).toBe('W02');
  });

  it('reports a shutdown as killed by SIGKILL, with the reason on the console', () => {
    const { run } = setup(Uint8Array.of(0x06));
    const replies = run();
    expect(replies).toHaveLength(2);
    expect(fromHexText(replies[0]!.slice(1))).toBe('guest shut down: triple fault (#UD at 0x1000, no IDT)\n');
    expect(replies[1]).toBe('X09');
  });

  it('runs a continue in slices until interrupted, then reports SIGINT', () => {
    const { ask, protocol, target, one } = setup();
    expect(ask('c1020')).toEqual({ replies: [], effect: 'running' });
    expect(protocol.running).toBe(true);
    for (let slice = 0; slice < 7; slice++) expect(protocol.runSlice()).toBeNull();
    expect(target.instructions).toBe(35);
    protocol.interrupt();
    expect(protocol.runSlice()).toEqual(['T02thread:1;']);
    expect(target.instructions).toBe(35);
    expect(protocol.running).toBe(false);
    expect(target.get('rip')).toBe(0x1020n);
    expect(one('?')).toBe('T02thread:1;');
    expect(describeStop(protocol.lastStop)).toBe('interrupted (SIGINT)');
  });

  it('ignores an interrupt while stopped and refuses packets while running', () => {
    const { ask, protocol } = setup();
    protocol.interrupt();
    expect(() => protocol.runSlice()).toThrow();
    expect(ask('c1020').effect).toBe('running');
    expect(() => ask('g')).toThrow();
  });

  it('answers vCont? and vCont;t', () => {
    const { one } = setup();
    expect(one('vCont?')).toBe('vCont;c;C;s;S;t');
    expect(one('vCont;t:1')).toBe('T00thread:1;');
    expect(one('vCont;s:2')).toBe('E01');
    expect(one('vCont;x')).toBe('E01');
  });
});

describe('GdbProtocol: monitor, kill, detach', () => {
  it('passes monitor commands to the target and returns the output in O packets', () => {
    const { ask } = setup();
    const result = ask(`qRcmd,${hexText('hello')}`);
    expect(result.replies).toHaveLength(2);
    expect(fromHexText(result.replies[0]!.slice(1))).toBe('Hello from the fake target\n');
    expect(result.replies[1]).toBe('OK');
    expect(ask('qRcmd,zz').replies).toEqual(['E01']);
  });

  it('splits long output to fit the packet size', () => {
    const { ask } = setup(DEMO_PROGRAM, { packetSize: 21 });
    const replies = ask(`qRcmd,${hexText('hello')}`).replies;
    expect(replies.length).toBeGreaterThan(2);
    for (const reply of replies) expect(reply.length).toBeLessThanOrEqual(21);
    const text = replies.slice(0, -1).map((reply) => fromHexText(reply.slice(1))).join('');
    expect(text).toBe('Hello from the fake target\n');
  });

  it('describes the attach stop', () => {
    const { ask } = setup();
    expect(fromHexText(ask(`qRcmd,${hexText('stop-reason')}`).replies[0]!.slice(1))).toBe('stopped when gdb attached\n');
  });

  it('kills with k (no reply) and vKill, and detaches with D', () => {
    const k = setup();
    expect(k.ask('k')).toEqual({ replies: [], effect: 'close' });
    expect(k.target.killed).toBe(true);
    const vKill = setup();
    expect(vKill.ask('vKill;a410')).toEqual({ replies: ['OK'], effect: 'close' });
    expect(vKill.target.killed).toBe(true);
    const d = setup();
    expect(d.ask('D')).toEqual({ replies: ['OK'], effect: 'close' });
    expect(d.target.detached).toBe(true);
    expect(d.target.killed).toBe(false);
  });
});
