import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  checksum,
  decodeHex,
  decodePayload,
  encodeHex,
  encodePacket,
  latin1Bytes,
  latin1Text,
  PacketDecoder,
  type DecoderEvent,
} from './packets.js';

const bytes = (text: string): Uint8Array => latin1Bytes(text);
const text = (data: Uint8Array): string => latin1Text(data);

/** The decoder's events with packet payloads shown as text. */
function show(events: readonly DecoderEvent[]): unknown[] {
  return events.map((event) => (event.kind === 'packet' ? { packet: text(event.data) } : event));
}

function decodeAll(chunks: readonly string[], maxPacketBytes?: number): unknown[] {
  const decoder = new PacketDecoder(maxPacketBytes);
  return show(chunks.flatMap((chunk) => decoder.push(bytes(chunk))));
}

describe('checksum and hex', () => {
  it('sums the bytes modulo 256 (GDB manual, Overview)', () => {
    expect(checksum(bytes('OK'))).toBe(0x9a);
    expect(checksum(bytes('qSupported'))).toBe(0x37);
    expect(checksum(new Uint8Array([0xff, 0xff, 0x03]))).toBe(0x01);
    expect(checksum(new Uint8Array(0))).toBe(0);
  });

  it('encodes and decodes hex in both cases', () => {
    expect(encodeHex(Uint8Array.of(0x00, 0x7f, 0xab, 0xff))).toBe('007fabff');
    expect(Array.from(decodeHex('007FabFF')!)).toEqual([0x00, 0x7f, 0xab, 0xff]);
    expect(decodeHex('abc')).toBeNull();
    expect(decodeHex('zz')).toBeNull();
    expect(decodeHex('')).toEqual(new Uint8Array(0));
  });

  it('refuses characters that are not one byte in latin1', () => {
    expect(() => latin1Bytes('é')).not.toThrow();
    expect(() => latin1Bytes('→')).toThrow(RangeError);
  });
});

describe('encodePacket', () => {
  it('frames a payload with its checksum', () => {
    expect(text(encodePacket('OK'))).toBe('$OK#9a');
    expect(text(encodePacket(''))).toBe('$#00');
  });

  it('escapes $ # } * as } and the byte XOR 0x20, checksumming the escaped bytes', () => {
    const frame = text(encodePacket(Uint8Array.of(0x24, 0x23, 0x7d, 0x2a, 0x41)));
    expect(frame.slice(0, -3)).toBe('$}\x04}\x03}]}\x0aA');
    const body = bytes(frame.slice(1, -3));
    expect(frame.slice(-2)).toBe(checksum(body).toString(16).padStart(2, '0'));
  });
});

describe('decodePayload', () => {
  it('undoes escapes', () => {
    expect(text(decodePayload(bytes('a}\x03b}]'))!)).toBe('a#b}');
  });

  it('expands run-length encoding: X*n repeats X another n-29 times', () => {
    expect(text(decodePayload(bytes('0* '))!)).toBe('0000');
    expect(text(decodePayload(bytes('ab*"c'))!)).toBe('abbbbbbc');
    expect(text(decodePayload(bytes('x*~'))!)).toBe('x'.repeat(1 + 126 - 29));
  });

  it('repeats the unescaped byte before the star', () => {
    expect(text(decodePayload(bytes('}\x03*!'))!)).toBe('#####');
  });

  it('rejects malformed data', () => {
    expect(decodePayload(bytes('*!'))).toBeNull();
    expect(decodePayload(bytes('a*'))).toBeNull();
    expect(decodePayload(bytes('a}'))).toBeNull();
    expect(decodePayload(bytes('a*\x1f'))).toBeNull();
  });
});

describe('PacketDecoder', () => {
  it('decodes a whole packet', () => {
    expect(decodeAll(['$OK#9a'])).toEqual([{ packet: 'OK' }]);
  });

  it('decodes the same packets whatever the chunk boundaries', () => {
    const stream = '+$qSupported:swbreak+#8b-\x03$m1000,4#8e+';
    const expected = decodeAll([stream]);
    expect(expected).toEqual([
      { kind: 'ack' },
      { packet: 'qSupported:swbreak+' },
      { kind: 'nack' },
      { kind: 'interrupt' },
      { packet: 'm1000,4' },
      { kind: 'ack' },
    ]);
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(decodeAll([stream.slice(0, cut), stream.slice(cut)])).toEqual(expected);
    }
    for (let first = 0; first <= stream.length; first++) {
      for (let second = first; second <= stream.length; second++) {
        const pieces = [stream.slice(0, first), stream.slice(first, second), stream.slice(second)];
        expect(decodeAll(pieces)).toEqual(expected);
      }
    }
    expect(decodeAll(stream.split(''))).toEqual(expected);
  });

  it('returns events only once they are complete', () => {
    const decoder = new PacketDecoder();
    expect(decoder.push(bytes('$O'))).toEqual([]);
    expect(decoder.push(bytes('K#9'))).toEqual([]);
    expect(show(decoder.push(bytes('a')))).toEqual([{ packet: 'OK' }]);
  });

  it('unescapes and expands run-length data in packets', () => {
    const raw = 'X1000,3:}\x03*!';
    const sum = checksum(bytes(raw)).toString(16).padStart(2, '0');
    expect(decodeAll([`$${raw}#${sum}`])).toEqual([{ packet: 'X1000,3:#####' }]);
  });

  it('reports a bad checksum, malformed checksum digits and malformed data', () => {
    expect(decodeAll(['$OK#9b'])).toEqual([{ kind: 'bad-packet', reason: 'checksum' }]);
    expect(decodeAll(['$OK#zz'])).toEqual([{ kind: 'bad-packet', reason: 'malformed' }]);
    const raw = '*!';
    expect(decodeAll([`$${raw}#${checksum(bytes(raw)).toString(16)}`])).toEqual([
      { kind: 'bad-packet', reason: 'malformed' },
    ]);
  });

  it('accepts upper-case checksum digits', () => {
    const raw = 'qC';
    const sum = checksum(bytes(raw)).toString(16).toUpperCase().padStart(2, '0');
    expect(decodeAll([`$${raw}#${sum}`])).toEqual([{ packet: 'qC' }]);
  });

  it('ignores noise between packets and restarts on a $ inside a packet', () => {
    expect(decodeAll(['xyz\n$g#67 '])).toEqual([{ packet: 'g' }]);
    expect(decodeAll(['$m10$g#67'])).toEqual([{ packet: 'g' }]);
  });

  it('refuses a packet longer than the limit and recovers for the next', () => {
    const long = 'm'.repeat(20);
    const frame = text(encodePacket(long));
    expect(decodeAll([frame, '$g#67'], 16)).toEqual([{ kind: 'bad-packet', reason: 'too-long' }, { packet: 'g' }]);
    expect(decodeAll([frame], 20)).toEqual([{ packet: long }]);
  });

  it('round-trips any payload through encodePacket in any chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 6 }),
        (payload, cuts) => {
          const frame = encodePacket(payload);
          const points = [...new Set(cuts.map((cut) => cut % (frame.length + 1)))].sort((a, b) => a - b);
          const decoder = new PacketDecoder();
          const events: DecoderEvent[] = [];
          let start = 0;
          for (const point of [...points, frame.length]) {
            events.push(...decoder.push(frame.subarray(start, point)));
            start = point;
          }
          expect(events).toHaveLength(1);
          const event = events[0]!;
          expect(event.kind).toBe('packet');
          if (event.kind === 'packet') expect(Array.from(event.data)).toEqual(Array.from(payload));
        },
      ),
      { numRuns: 300 },
    );
  });
});
