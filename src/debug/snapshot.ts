/**
 * Snapshots of a machine's whole state, for time travel: the debugger goes
 * back by restoring the nearest snapshot and running forward again, which
 * gives the same run because runs are deterministic (DESIGN.md,
 * "Determinism"). What is snapshotted is either hvsim's own VM (a Vm: the
 * machine beneath it and the TypeScript hypervisor's fields) or a bare
 * PcMachine (`hvsim debug --bare`: the image's own hypervisor, whose state is
 * all in the processor, its VMX unit and memory).
 *
 * What a snapshot holds. Every object reachable from the Vm or PcMachine,
 * property by property: the processor (registers, lazy flags, segment caches, control and
 * debug registers, MSRs, x87/SSE state, the paging TLB), the VMX unit (the
 * current VMCS's field values, the VMCS cache, EPT and its caches, pending
 * events), the platform's devices (both 8259As, the 8254 and its counters,
 * the 16550 UART and its FIFOs, CMOS/RTC, local APIC, I/O APIC, fw_cfg, PCI,
 * the system ports), the clock with every timer's deadline and the time
 * skipped while halted, the status asked for at the debug-exit port, and for
 * a Vm the hypervisor's own fields (exit count, host interrupt, launch state,
 * handler table). Then physical memory — guest RAM and the hypervisor's
 * pages above it (VMCS region, bitmaps, EPT tables) — page by page. Nothing is named here: a field another engineer adds to a
 * device tomorrow is in tomorrow's snapshots.
 *
 * What it leaves out, and why that is safe:
 * - functions and frozen (immer) values: they never change;
 * - the decoded-block cache and the MMU's fast TLB entries: caches in front
 *   of memory and of the paging TLB (mmu.ts, blocks.ts); restoring drops them
 *   and the model fills them again from the restored state;
 * - DataView objects: the pages of physical memory, restored through `pages`;
 * - objects the caller names as opaque (the debugger's own hooks).
 * One value lives in a closure no property reaches: the PC's "the interrupt
 * controllers may have changed" flag (machine.ts); restoring raises it, which
 * only makes the next look at them a real one.
 *
 * Cost: restoring is a copy back of what the snapshot holds. A snapshot
 * shares, with the one it is compared to at capture, every 4-KiB chunk of a
 * typed array and every page of memory that did not change, so its own cost
 * is the pages and chunks that did change, plus about 300 small records.
 */
import type { Cpu } from '../cpu/cpu.js';
import type { Vm } from '../hv/vm.js';
import { PcMachine } from '../platform/machine.js';

/** Bytes per chunk of a typed array and per page of memory compared and shared between snapshots. */
const CHUNK = 4096;

type TypedArray = Exclude<ArrayBufferView, DataView>;

interface PropsRecord { readonly kind: 'props'; readonly obj: Record<string, unknown>; readonly keys: readonly string[]; readonly values: readonly unknown[] }
interface ArrayRecord { readonly kind: 'array'; readonly obj: unknown[]; readonly values: readonly unknown[] }
interface TypedRecord { readonly kind: 'typed'; readonly obj: TypedArray; readonly chunks: readonly Uint8Array[] }
interface MapRecord { readonly kind: 'map'; readonly obj: Map<unknown, unknown>; readonly entries: readonly (readonly [unknown, unknown])[] }
interface SetRecord { readonly kind: 'set'; readonly obj: Set<unknown>; readonly values: readonly unknown[] }
type ObjectRecord = PropsRecord | ArrayRecord | TypedRecord | MapRecord | SetRecord;

/** A VM's state at one moment (see the file comment). Immutable once taken. */
export interface StateSnapshot {
  /** One record per object, in the order they were reached. */
  readonly records: readonly ObjectRecord[];
  /** Typed arrays by identity, for sharing their chunks with the next snapshot. */
  readonly typed: ReadonlyMap<TypedArray, TypedRecord>;
  /** Physical memory: a copy of each allocated page, by page number. */
  readonly pages: ReadonlyMap<number, Uint8Array>;
  /** Bytes of copies this snapshot made itself (chunks and pages it could not share). */
  readonly ownBytes: number;
}

/** How the walk treats particular objects (besides the built-in rules of the file comment). */
export interface CaptureRules {
  /** Objects kept by reference only: their contents are neither saved nor restored. */
  readonly opaque: ReadonlySet<object>;
  /** Objects whose primitive properties alone are saved (numbers, booleans, strings, null). */
  readonly primitivesOnly: ReadonlySet<object>;
  /** Properties left out of particular objects. */
  readonly skipProps: ReadonlyMap<object, ReadonlySet<string>>;
}

function isTyped(v: object): v is TypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

function bytesOf(t: TypedArray | DataView): Uint8Array {
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** What a snapshot is taken of: hvsim's VM, or a bare machine running the image's own hypervisor. */
export type Snapshotted = Vm | PcMachine;

function machineOf(s: Snapshotted): PcMachine {
  return s instanceof PcMachine ? s : s.machine;
}

/** The processors of what is snapshotted (they share one physical memory). */
function cpusOf(s: Snapshotted): readonly Cpu[] {
  return machineOf(s).cpus;
}

/** The rules for a machine: each block cache opaque, each MMU's fast TLB left out, memory pages handled apart. */
export function machineCaptureRules(machine: PcMachine, opaque: Iterable<object> = []): CaptureRules {
  const cpus = machine.cpus;
  return {
    opaque: new Set<object>([...cpus.map((c) => c.blocks), ...opaque]),
    primitivesOnly: new Set<object>(cpus.map((c) => c.mmu)),
    skipProps: new Map<object, ReadonlySet<string>>([[cpus[0]!.memory, new Set(['pages', 'mmio'])]]),
  };
}

/** The rules for a hypervisor VM: those of its machine. */
export function vmCaptureRules(vm: Vm, opaque: Iterable<object> = []): CaptureRules {
  return machineCaptureRules(vm.machine, opaque);
}

/** What the walk does with a value it finds: follow it (an object it records) or keep it as it is. */
function followable(v: unknown, rules: CaptureRules): v is object {
  if (v === null || typeof v !== 'object') return false;
  if (rules.opaque.has(v) || v instanceof DataView || v instanceof ArrayBuffer) return false;
  if (isTyped(v)) return true;
  return !Object.isFrozen(v);
}

/**
 * Visits every object reachable from `root` under `rules`, once, in a fixed
 * order (properties in their own order, depth first), with the path it was
 * first reached by.
 */
function walk(root: object, rules: CaptureRules, visit: (obj: object, path: string) => void, rootPath: string): void {
  const seen = new Set<object>();
  const stack: [object, string][] = [[root, rootPath]];
  const push = (v: unknown, path: string): void => {
    if (followable(v, rules) && !seen.has(v)) stack.push([v, path]);
  };
  while (stack.length > 0) {
    const [obj, path] = stack.pop()!;
    if (seen.has(obj)) continue;
    seen.add(obj);
    visit(obj, path);
    if (isTyped(obj) || rules.primitivesOnly.has(obj)) continue;
    const children: [unknown, string][] = [];
    if (obj instanceof Map) {
      let k = 0;
      for (const [key, value] of obj) { children.push([key, `${path}.key${k}`], [value, `${path}.get${k}`]); k++; }
    } else if (obj instanceof Set) {
      let k = 0;
      for (const value of obj) children.push([value, `${path}.has${k++}`]);
    } else if (Array.isArray(obj)) {
      obj.forEach((value, k) => children.push([value, `${path}[${k}]`]));
    } else {
      for (const key of stateKeys(obj, rules)) children.push([(obj as Record<string, unknown>)[key], `${path}.${key}`]);
    }
    // Reversed onto the stack, so that the first property is visited first.
    for (let k = children.length - 1; k >= 0; k--) push(children[k]![0], children[k]![1]);
  }
}

/** The object's own data properties (accessors compute from state, they are not state), less those the rules skip. */
function stateKeys(obj: object, rules: CaptureRules): string[] {
  const skip = rules.skipProps.get(obj), only = rules.primitivesOnly.has(obj);
  const descriptors = Object.getOwnPropertyDescriptors(obj) as Record<string, PropertyDescriptor>;
  return Object.keys(obj).filter((k) => {
    const d = descriptors[k]!;
    return 'value' in d && d.writable === true && (skip === undefined || !skip.has(k)) && (!only || isPrimitive(d.value));
  });
}

function isPrimitive(v: unknown): boolean {
  return v === null || (typeof v !== 'object' && typeof v !== 'function');
}

/** The name of the root in fingerprint paths: `vm` or `machine`. */
function rootName(s: Snapshotted): string {
  return s instanceof PcMachine ? 'machine' : 'vm';
}

/**
 * Takes a snapshot of `vm` (a Vm or a bare PcMachine). Chunks and pages equal
 * to those of `previous` (any earlier snapshot of the same one) are shared
 * with it, not copied.
 */
export function captureState(vm: Snapshotted, rules: CaptureRules, previous: StateSnapshot | null = null): StateSnapshot {
  const records: ObjectRecord[] = [];
  const typed = new Map<TypedArray, TypedRecord>();
  let ownBytes = 0;
  walk(vm, rules, (obj) => {
    if (isTyped(obj)) {
      const bytes = bytesOf(obj), old = previous?.typed.get(obj);
      const chunks: Uint8Array[] = [];
      for (let at = 0, k = 0; at < bytes.length; at += CHUNK, k++) {
        const live = bytes.subarray(at, Math.min(bytes.length, at + CHUNK));
        const shared = old?.chunks[k];
        if (shared !== undefined && sameBytes(shared, live)) chunks.push(shared);
        else { chunks.push(live.slice()); ownBytes += live.length; }
      }
      const r: TypedRecord = { kind: 'typed', obj, chunks };
      records.push(r);
      typed.set(obj, r);
    } else if (obj instanceof Map) {
      records.push({ kind: 'map', obj, entries: [...obj.entries()] });
    } else if (obj instanceof Set) {
      records.push({ kind: 'set', obj, values: [...obj] });
    } else if (Array.isArray(obj)) {
      records.push({ kind: 'array', obj, values: obj.slice() });
    } else {
      const o = obj as Record<string, unknown>, keys = stateKeys(obj, rules);
      records.push({ kind: 'props', obj: o, keys, values: keys.map((k) => o[k]) });
    }
  }, rootName(vm));
  const memory = cpusOf(vm)[0]!.memory, pages = new Map<number, Uint8Array>();
  const count = Math.ceil(memory.size / CHUNK);
  for (let ppn = 0; ppn < count; ppn++) {
    if (!memory.isAllocated(ppn)) continue;
    const live = bytesOf(memory.page(ppn)!), old = previous?.pages.get(ppn);
    if (old !== undefined && sameBytes(old, live)) pages.set(ppn, old);
    else { pages.set(ppn, live.slice()); ownBytes += CHUNK; }
  }
  // Immutable once taken: the records and their lists are frozen (not the live objects they name),
  // and the copies of chunks and pages are never written.
  for (const r of records) {
    Object.freeze(r);
    if (r.kind === 'props') { Object.freeze(r.keys); Object.freeze(r.values); }
    else if (r.kind === 'typed') Object.freeze(r.chunks);
    else if (r.kind === 'map') Object.freeze(r.entries);
    else Object.freeze(r.values);
  }
  return Object.freeze({ records: Object.freeze(records), typed, pages, ownBytes });
}

/**
 * Puts `vm` (a Vm or a bare PcMachine) back in the state of `snapshot`:
 * memory first, then every object recorded, property by property; then the
 * caches are dropped (the decoded blocks, the MMU's fast entries). The
 * interrupt controllers are looked at anew at the next boundary.
 */
export function restoreState(vm: Snapshotted, snapshot: StateSnapshot): void {
  const cpus = cpusOf(vm), memory = cpus[0]!.memory;
  // First, so that the processor's pending-work bits it raises are then restored too.
  forgetInterruptAnswers(vm);
  const count = Math.ceil(memory.size / CHUNK);
  for (let ppn = 0; ppn < count; ppn++) {
    if (!memory.isAllocated(ppn)) continue;
    const live = bytesOf(memory.page(ppn)!), saved = snapshot.pages.get(ppn);
    // A page first touched after the snapshot was all zeros then.
    if (saved === undefined) live.fill(0);
    else if (!sameBytes(saved, live)) live.set(saved);
  }
  for (const r of snapshot.records) {
    switch (r.kind) {
      case 'props': {
        const o = r.obj;
        r.keys.forEach((k, i) => { o[k] = r.values[i]; });
        break;
      }
      case 'array':
        r.obj.length = r.values.length;
        r.values.forEach((v, i) => { r.obj[i] = v; });
        break;
      case 'typed': {
        const bytes = bytesOf(r.obj);
        r.chunks.forEach((c, k) => bytes.set(c, k * CHUNK));
        break;
      }
      case 'map':
        r.obj.clear();
        for (const [k, v] of r.entries) r.obj.set(k, v);
        break;
      case 'set':
        r.obj.clear();
        for (const v of r.values) r.obj.add(v);
        break;
    }
  }
  for (const cpu of cpus) {
    cpu.blocks.clear();
    // The fast entries go; the set in use follows the restored CPL (mmu.ts selectSet).
    cpu.mmu.flushFast();
    cpu.mmu.setCpl3(cpu.cpl === 3);
  }
}

/**
 * The PC caches "no interrupt" between changes of its interrupt controllers
 * in a closure (machine.ts `attach`), which a snapshot cannot reach; the local
 * APIC's event callback is what raises that flag, so it is called for each
 * processor. A spurious call costs one real look at the controllers, nothing else.
 */
function forgetInterruptAnswers(vm: Snapshotted): void {
  for (const apic of machineOf(vm).apics) {
    (apic as unknown as { readonly onEvent?: () => void }).onEvent?.();
  }
}

/** Bytes a set of snapshots holds together (each shared chunk and page counted once). */
export function snapshotBytes(snapshots: Iterable<StateSnapshot>): number {
  const seen = new Set<Uint8Array>();
  let total = 0;
  const add = (b: Uint8Array): void => { if (!seen.has(b)) { seen.add(b); total += b.length; } };
  for (const s of snapshots) {
    for (const r of s.typed.values()) r.chunks.forEach(add);
    for (const p of s.pages.values()) add(p);
    // The small records: about 16 bytes per value kept.
    for (const r of s.records) total += 16 * (r.kind === 'props' ? r.values.length : r.kind === 'map' ? 2 * r.entries.length : r.kind === 'typed' ? 1 : r.values.length);
  }
  return total;
}

/**
 * A fingerprint of every object of the state of a VM or bare machine (the
 * objects a snapshot records, and memory page by page), by the path it is
 * first reached by (from `vm` or `machine`): two equal fingerprints mean two
 * equal states. Tests compare them with `diffFingerprints` to name what
 * differs. With `root` (a device, say), only what is reachable from it,
 * memory left out.
 */
export function stateFingerprint(vm: Snapshotted, rules: CaptureRules, root: object = vm): Map<string, string> {
  const out = new Map<string, string>();
  const pathOf = new Map<object, string>();
  const rootPath = root === vm ? rootName(vm) : (root.constructor?.name ?? 'root');
  walk(root, rules, (obj, path) => { pathOf.set(obj, path); }, rootPath);
  const show = (v: unknown): string => {
    if (typeof v === 'function') return 'fn';
    if (typeof v === 'bigint') return `${v}n`;
    if (v !== null && typeof v === 'object') return `->${pathOf.get(v) ?? (Object.isFrozen(v) ? 'frozen' : 'opaque')}`;
    return Object.is(v, -0) ? '-0' : String(v);
  };
  walk(root, rules, (obj, path) => {
    let text: string;
    if (isTyped(obj)) text = Buffer.from(bytesOf(obj)).toString('base64');
    else if (obj instanceof Map) text = [...obj].map(([k, v]) => `${show(k)}=${show(v)}`).join(',');
    else if (obj instanceof Set) text = [...obj].map(show).join(',');
    else if (Array.isArray(obj)) text = obj.map(show).join(',');
    else {
      const o = obj as Record<string, unknown>;
      text = stateKeys(obj, rules).map((k) => `${k}:${show(o[k])}`).join(',');
    }
    out.set(path, text);
  }, rootPath);
  if (root !== vm) return out;
  const memory = cpusOf(vm)[0]!.memory, count = Math.ceil(memory.size / CHUNK);
  for (let ppn = 0; ppn < count; ppn++) {
    if (!memory.isAllocated(ppn)) continue;
    const bytes = bytesOf(memory.page(ppn)!);
    // An all-zero page is the same state as one never touched.
    if (bytes.every((b) => b === 0)) continue;
    out.set(`page ${ppn.toString(16)}`, Buffer.from(bytes).toString('base64'));
  }
  return out;
}

/** The paths whose fingerprints differ between two states (missing on either side included), sorted. */
export function diffFingerprints(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): string[] {
  const paths = new Set([...a.keys(), ...b.keys()]);
  return [...paths].filter((p) => a.get(p) !== b.get(p)).sort();
}
