/**
 * The request → reply engine of the GDB stub (GDB manual, "Remote Protocol",
 * "Packets" and "Stop Reply Packets"), in all-stop mode with one thread.
 * Pure: it takes decoded packet payloads, drives a {@link GdbTarget} and
 * returns reply payloads; framing, acknowledgements and scheduling live in
 * packets.ts and connection.ts.
 *
 * A `continue` does not run to completion inside {@link GdbProtocol.handle}:
 * it returns the effect `running`, and the caller then calls
 * {@link GdbProtocol.runSlice} until that returns the stop replies, giving the
 * event loop a turn between slices. {@link GdbProtocol.interrupt} (Ctrl-C)
 * makes the next slice stop the run with SIGINT.
 */
import { decodeHex, encodeHex, latin1Text, DEFAULT_MAX_PACKET_BYTES } from './packets.js';
import { X86_64_DESCRIPTION, type RegisterInfo, type TargetDescription } from './target-description.js';
import type { BreakpointKind, GdbTarget, StopEvent } from './target.js';

/** gdb's signal numbers (gdb/signals.def), which stop replies carry; they are not the host's. */
export const GdbSignal = {
  NONE: 0,
  INT: 2,
  TRAP: 5,
  KILL: 9,
} as const;

/** The one thread the stub reports: the guest processor. */
export const THREAD_ID = 1;

/** What the caller must do after sending a result's replies. */
export type ProtocolEffect =
  /** Nothing: wait for the next packet. */
  | 'none'
  /** The guest runs: call {@link GdbProtocol.runSlice} until it returns the stop replies. */
  | 'running'
  /** Switch to no-acknowledgement mode once the replies are sent (QStartNoAckMode). */
  | 'no-ack'
  /** Close the connection once the replies are sent (kill, detach). */
  | 'close';

/** The answer to one packet. */
export interface ProtocolResult {
  /** Payloads to send, in order, as latin1 strings (frame each with encodePacket). */
  readonly replies: readonly string[];
  /** What to do after sending them. */
  readonly effect: ProtocolEffect;
}

/** Settings of a {@link GdbProtocol}. */
export interface ProtocolOptions {
  /** Register layout and XML (default: x86-64). */
  readonly description?: TargetDescription;
  /** Instructions per {@link GdbTarget.resume} call during a continue (default 100 000). */
  readonly sliceInstructions?: number;
  /** Largest packet accepted, announced as PacketSize (default {@link DEFAULT_MAX_PACKET_BYTES}). */
  readonly packetSize?: number;
}

/** Default instructions per resume slice. */
export const DEFAULT_SLICE_INSTRUCTIONS = 100_000;

const OK = 'OK';
/** The request is malformed or names something that does not exist. */
const ERROR_REQUEST = 'E01';
/** The target refused: memory not mapped, register or breakpoint not accepted. */
const ERROR_TARGET = 'E02';
/** The qXfer annex is unknown. */
const ERROR_ANNEX = 'E00';

const UTF8_ENCODER = new TextEncoder();
const UTF8_DECODER = new TextDecoder();

const HEX_NUMBER = /^[0-9a-fA-F]+$/;

function parseHex(text: string): bigint | null {
  return HEX_NUMBER.test(text) ? BigInt(`0x${text}`) : null;
}

function parseHexNumber(text: string): number | null {
  const value = parseHex(text);
  return value === null || value > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(value);
}

function hexAddress(address: bigint): string {
  return address.toString(16);
}

function twoHexDigits(value: number): string {
  return (value & 0xff).toString(16).padStart(2, '0');
}

/** A register value as `bitSize / 8` bytes, least significant first, in hex. */
export function encodeRegister(value: bigint, bitSize: number): string {
  let rest = BigInt.asUintN(bitSize, value);
  const bytes = new Uint8Array(bitSize / 8);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return encodeHex(bytes);
}

/** The value of little-endian bytes. */
export function decodeLittleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  return value;
}

const Z_KINDS: readonly BreakpointKind[] = ['sw', 'hw', 'write', 'read', 'access'];

/** Does a thread-id of a vCont action, H or T packet name our thread (or all threads)? */
function namesOurThread(threadId: string): boolean {
  let thread = threadId;
  if (thread.startsWith('p')) {
    const dot = thread.indexOf('.');
    if (dot < 0) return true;
    thread = thread.slice(dot + 1);
  }
  if (thread === '-1' || thread === '0') return true;
  return parseHex(thread) === BigInt(THREAD_ID);
}

/** A one-line account of a stop, for `monitor stop-reason`. */
export function describeStop(event: StopEvent | null): string {
  if (event === null) return 'stopped when gdb attached';
  switch (event.kind) {
    case 'breakpoint': return `${event.type === 'sw' ? 'software' : 'hardware'} breakpoint at 0x${hexAddress(event.address)}`;
    case 'watchpoint': return `${event.type} watchpoint hit at 0x${hexAddress(event.address)}`;
    case 'step': return 'single step completed';
    case 'vm-exit': return event.reason;
    case 'exited': return `guest exited with status ${event.status}`;
    case 'shutdown': return `guest shut down: ${event.reason}`;
    case 'interrupted': return 'interrupted (SIGINT)';
  }
}

/**
 * One debugging session's protocol state over a target: what gdb announced,
 * the last stop, whether the guest runs. Make a new one per connection.
 */
export class GdbProtocol {
  private readonly registers: readonly RegisterInfo[];
  private readonly xml: string;
  private readonly sliceInstructions: number;
  private readonly packetSize: number;
  private peerSwbreak = false;
  private peerHwbreak = false;
  private isRunning = false;
  private interruptRequested = false;
  private lastEvent: StopEvent | null = null;
  private lastStopReply = `T${twoHexDigits(GdbSignal.TRAP)}thread:${THREAD_ID};`;
  private ended = false;

  constructor(
    private readonly target: GdbTarget,
    options: ProtocolOptions = {},
  ) {
    const description = options.description ?? X86_64_DESCRIPTION;
    this.registers = description.registers;
    this.xml = description.xml;
    this.sliceInstructions = options.sliceInstructions ?? DEFAULT_SLICE_INSTRUCTIONS;
    this.packetSize = options.packetSize ?? DEFAULT_MAX_PACKET_BYTES;
  }

  /** True between a continue and its stop. */
  get running(): boolean {
    return this.isRunning;
  }

  /** The event of the last stop (null before the first resume). */
  get lastStop(): StopEvent | null {
    return this.lastEvent;
  }

  /** Asks a running guest to stop: the next {@link runSlice} reports SIGINT. Ignored when stopped. */
  interrupt(): void {
    if (this.isRunning) this.interruptRequested = true;
  }

  /**
   * Runs one slice of a continue. Returns null while the guest keeps running,
   * and the stop replies when it stopped (or was interrupted).
   */
  runSlice(): string[] | null {
    if (!this.isRunning) throw new Error('runSlice called while the guest is stopped');
    let event: StopEvent | null;
    if (this.interruptRequested) event = { kind: 'interrupted' };
    else event = this.target.resume(this.sliceInstructions);
    if (event === null) return null;
    this.isRunning = false;
    this.interruptRequested = false;
    return this.stopReplies(event);
  }

  /** Answers one packet (its decoded payload). Must not be called while {@link running}. */
  handle(packet: Uint8Array): ProtocolResult {
    if (this.isRunning) throw new Error('packet handled while the guest is running');
    const text = latin1Text(packet);
    switch (text[0]) {
      case '?': return reply(this.lastStopReply);
      case 'q': return this.query(text);
      case 'Q': return text === 'QStartNoAckMode' ? { replies: [OK], effect: 'no-ack' } : reply('');
      case 'g': return reply(this.readAllRegisters());
      case 'G': return reply(this.writeAllRegisters(text.slice(1)));
      case 'p': return reply(this.readOneRegister(text.slice(1)));
      case 'P': return reply(this.writeOneRegister(text.slice(1)));
      case 'm': return reply(this.readMemory(text.slice(1)));
      case 'M': return reply(this.writeMemoryHex(text.slice(1)));
      case 'X': return reply(this.writeMemoryBinary(packet));
      case 'c': return this.continueAt(text.slice(1));
      case 'C': return this.continueAt(afterSignal(text.slice(1)));
      case 's': return this.stepAt(text.slice(1));
      case 'S': return this.stepAt(afterSignal(text.slice(1)));
      case 'v': return this.verbose(text);
      case 'Z': return reply(this.breakpoint(text.slice(1), true));
      case 'z': return reply(this.breakpoint(text.slice(1), false));
      case 'H': return reply(text.length > 2 && namesOurThread(text.slice(2)) ? OK : ERROR_REQUEST);
      case 'T': return reply(namesOurThread(text.slice(1)) ? OK : ERROR_REQUEST);
      case 'k':
        this.target.kill();
        return { replies: [], effect: 'close' };
      case 'D':
        this.target.detach();
        return { replies: [OK], effect: 'close' };
      default: return reply('');
    }
  }

  private query(text: string): ProtocolResult {
    if (text.startsWith('qSupported')) return reply(this.supported(text));
    if (text.startsWith('qXfer:')) return reply(this.transfer(text));
    if (text.startsWith('qRcmd,')) return this.monitor(text.slice('qRcmd,'.length));
    switch (text) {
      case 'qAttached': return reply('1');
      case 'qC': return reply(`QC${THREAD_ID.toString(16)}`);
      case 'qfThreadInfo': return reply(`m${THREAD_ID.toString(16)}`);
      case 'qsThreadInfo': return reply('l');
      default: return reply('');
    }
  }

  private supported(text: string): string {
    const colon = text.indexOf(':');
    const features = colon < 0 ? [] : text.slice(colon + 1).split(';');
    this.peerSwbreak = features.includes('swbreak+');
    this.peerHwbreak = features.includes('hwbreak+');
    return [
      `PacketSize=${this.packetSize.toString(16)}`,
      'qXfer:features:read+',
      'QStartNoAckMode+',
      'swbreak+',
      'hwbreak+',
      'vContSupported+',
    ].join(';');
  }

  private transfer(text: string): string {
    const match = /^qXfer:features:read:([^:]*):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(text);
    if (match === null) return text.startsWith('qXfer:features:') ? ERROR_REQUEST : '';
    if (match[1] !== 'target.xml') return ERROR_ANNEX;
    const offset = parseHexNumber(match[2]!);
    const length = parseHexNumber(match[3]!);
    if (offset === null || length === null) return ERROR_REQUEST;
    if (offset >= this.xml.length) return 'l';
    const end = Math.min(this.xml.length, offset + length);
    return `${end >= this.xml.length ? 'l' : 'm'}${this.xml.slice(offset, end)}`;
  }

  private monitor(hexCommand: string): ProtocolResult {
    const bytes = decodeHex(hexCommand);
    if (bytes === null) return reply(ERROR_REQUEST);
    const command = UTF8_DECODER.decode(bytes).trim();
    const output = command === 'stop-reason' ? `${describeStop(this.lastEvent)}\n` : this.target.monitor(command);
    return { replies: [...this.consoleOutput(output), OK], effect: 'none' };
  }

  /** `O` packets carrying `text` (as UTF-8) to gdb's console, split to fit the packet size. */
  private consoleOutput(text: string): string[] {
    const bytes = UTF8_ENCODER.encode(text);
    const chunk = Math.max(1, Math.floor((this.packetSize - 1) / 2));
    const packets: string[] = [];
    for (let start = 0; start < bytes.length; start += chunk) {
      packets.push(`O${encodeHex(bytes.subarray(start, start + chunk))}`);
    }
    return packets;
  }

  private readAllRegisters(): string {
    const values = this.target.readRegisters();
    return this.registers.map((info, index) => encodeRegister(values[index] ?? 0n, info.bitSize)).join('');
  }

  private writeAllRegisters(hex: string): string {
    const bytes = decodeHex(hex);
    const total = this.registers.reduce((sum, info) => sum + info.bitSize / 8, 0);
    if (bytes === null || bytes.length !== total) return ERROR_REQUEST;
    const current = this.target.readRegisters();
    let offset = 0;
    let refused = false;
    this.registers.forEach((info, index) => {
      const size = info.bitSize / 8;
      const value = decodeLittleEndian(bytes.subarray(offset, offset + size));
      offset += size;
      // Only changed registers are written: a control register rewritten with
      // its own value must not look like a guest-visible write.
      if (value !== BigInt.asUintN(info.bitSize, current[index] ?? 0n) && !this.target.writeRegister(index, value)) {
        refused = true;
      }
    });
    return refused ? ERROR_TARGET : OK;
  }

  private readOneRegister(hexIndex: string): string {
    const index = parseHexNumber(hexIndex);
    const info = index === null ? undefined : this.registers[index];
    if (index === null || info === undefined) return ERROR_REQUEST;
    return encodeRegister(this.target.readRegisters()[index] ?? 0n, info.bitSize);
  }

  private writeOneRegister(request: string): string {
    const equals = request.indexOf('=');
    const index = equals < 0 ? null : parseHexNumber(request.slice(0, equals));
    const info = index === null ? undefined : this.registers[index];
    if (index === null || info === undefined) return ERROR_REQUEST;
    const bytes = decodeHex(request.slice(equals + 1));
    if (bytes === null || bytes.length !== info.bitSize / 8) return ERROR_REQUEST;
    return this.target.writeRegister(index, decodeLittleEndian(bytes)) ? OK : ERROR_TARGET;
  }

  /** Parses `addr,length` into numbers; null if malformed. */
  private addressAndLength(text: string): { address: bigint; length: number } | null {
    const comma = text.indexOf(',');
    if (comma < 0) return null;
    const address = parseHex(text.slice(0, comma));
    const length = parseHexNumber(text.slice(comma + 1));
    if (address === null || length === null) return null;
    return { address: BigInt.asUintN(64, address), length };
  }

  private readMemory(request: string): string {
    const range = this.addressAndLength(request);
    if (range === null) return ERROR_REQUEST;
    // A reply holds at most packetSize hex digits; gdb accepts a shorter read.
    const length = Math.min(range.length, Math.floor(this.packetSize / 2));
    if (length === 0) return '';
    const bytes = this.target.readMemory(range.address, length);
    if (bytes === null || bytes.length === 0) return ERROR_TARGET;
    return encodeHex(bytes.subarray(0, length));
  }

  private writeMemoryHex(request: string): string {
    const colon = request.indexOf(':');
    const range = colon < 0 ? null : this.addressAndLength(request.slice(0, colon));
    if (range === null) return ERROR_REQUEST;
    const bytes = decodeHex(request.slice(colon + 1));
    if (bytes === null || bytes.length !== range.length) return ERROR_REQUEST;
    if (bytes.length === 0) return OK;
    return this.target.writeMemory(range.address, bytes) ? OK : ERROR_TARGET;
  }

  private writeMemoryBinary(packet: Uint8Array): string {
    const colon = packet.indexOf(0x3a);
    const range = colon < 0 ? null : this.addressAndLength(latin1Text(packet.subarray(1, colon)));
    if (range === null) return ERROR_REQUEST;
    const bytes = packet.subarray(colon + 1);
    if (bytes.length !== range.length) return ERROR_REQUEST;
    // `X addr,0:` is gdb's probe for X support.
    if (bytes.length === 0) return OK;
    return this.target.writeMemory(range.address, bytes.slice()) ? OK : ERROR_TARGET;
  }

  /** Sets RIP for `c addr` / `s addr`; false if the address is malformed or refused. */
  private moveTo(addressText: string): boolean {
    if (addressText === '') return true;
    const address = parseHex(addressText);
    const rip = this.registers.findIndex((info) => info.type === 'code_ptr');
    return address !== null && rip >= 0 && this.target.writeRegister(rip, BigInt.asUintN(64, address));
  }

  private continueAt(addressText: string): ProtocolResult {
    if (this.ended) return reply(this.lastStopReply);
    if (!this.moveTo(addressText)) return reply(ERROR_REQUEST);
    this.isRunning = true;
    this.interruptRequested = false;
    return { replies: [], effect: 'running' };
  }

  private stepAt(addressText: string): ProtocolResult {
    if (this.ended) return reply(this.lastStopReply);
    if (!this.moveTo(addressText)) return reply(ERROR_REQUEST);
    return { replies: this.stopReplies(this.target.step()), effect: 'none' };
  }

  private verbose(text: string): ProtocolResult {
    if (text === 'vCont?') return reply('vCont;c;C;s;S;t');
    if (text.startsWith('vCont;')) return this.vCont(text.slice('vCont;'.length).split(';'));
    if (text === 'vKill' || text.startsWith('vKill;')) {
      this.target.kill();
      return { replies: [OK], effect: 'close' };
    }
    return reply('');
  }

  /** vCont: the leftmost action that names our thread (or no thread) applies. */
  private vCont(actions: readonly string[]): ProtocolResult {
    for (const action of actions) {
      const colon = action.indexOf(':');
      const name = colon < 0 ? action : action.slice(0, colon);
      if (colon >= 0 && !namesOurThread(action.slice(colon + 1))) continue;
      switch (name[0]) {
        case 'c':
        case 'C':
          return this.continueAt('');
        case 's':
        case 'S':
          return this.stepAt('');
        case 't':
          return reply(`T${twoHexDigits(GdbSignal.NONE)}thread:${THREAD_ID};`);
        default:
          return reply(ERROR_REQUEST);
      }
    }
    return reply(ERROR_REQUEST);
  }

  private breakpoint(request: string, insert: boolean): string {
    const fields = request.split(';')[0]!.split(',');
    if (fields.length !== 3) return ERROR_REQUEST;
    const type = parseHexNumber(fields[0]!);
    const kind = type === null ? undefined : Z_KINDS[type];
    if (kind === undefined) return '';
    const address = parseHex(fields[1]!);
    const length = parseHexNumber(fields[2]!);
    if (address === null || length === null) return ERROR_REQUEST;
    const done = insert
      ? this.target.setBreakpoint(kind, BigInt.asUintN(64, address), length)
      : this.target.removeBreakpoint(kind, BigInt.asUintN(64, address), length);
    return done ? OK : ERROR_TARGET;
  }

  /** The packets that report `event` to gdb; remembers them for `?`. */
  private stopReplies(event: StopEvent): string[] {
    this.lastEvent = event;
    const thread = `thread:${THREAD_ID.toString(16)};`;
    const trap = `T${twoHexDigits(GdbSignal.TRAP)}${thread}`;
    let output: string[] = [];
    let stop: string;
    switch (event.kind) {
      case 'breakpoint':
        if (event.type === 'sw') stop = this.peerSwbreak ? `${trap}swbreak:;` : trap;
        else stop = this.peerHwbreak ? `${trap}hwbreak:;` : trap;
        break;
      case 'watchpoint': {
        const name = event.type === 'write' ? 'watch' : event.type === 'read' ? 'rwatch' : 'awatch';
        stop = `${trap}${name}:${hexAddress(event.address)};`;
        break;
      }
      case 'step':
        stop = trap;
        break;
      case 'vm-exit':
        output = this.consoleOutput(`${event.reason}\n`);
        stop = trap;
        break;
      case 'exited':
        stop = `W${twoHexDigits(event.status)}`;
        this.ended = true;
        break;
      case 'shutdown':
        output = this.consoleOutput(`guest shut down: ${event.reason}\n`);
        stop = `X${twoHexDigits(GdbSignal.KILL)}`;
        this.ended = true;
        break;
      case 'interrupted':
        stop = `T${twoHexDigits(GdbSignal.INT)}${thread}`;
        break;
    }
    this.lastStopReply = stop;
    return [...output, stop];
  }
}

function reply(payload: string): ProtocolResult {
  return { replies: [payload], effect: 'none' };
}

/** The part of a `C sig;addr` / `S sig;addr` request after the signal: the address, or "". */
function afterSignal(request: string): string {
  const semicolon = request.indexOf(';');
  return semicolon < 0 ? '' : request.slice(semicolon + 1);
}
