/**
 * The TCP transport of the GDB stub (Node only): listens on 127.0.0.1, serves
 * one gdb at a time (a second connection is closed at once), and wires each
 * socket to a {@link GdbConnection} over a fresh {@link GdbProtocol}. Slices of
 * a continue run from setImmediate, so socket input, and with it gdb's Ctrl-C,
 * is read between them.
 *
 * Start it, then in gdb: `target remote 127.0.0.1:PORT`.
 */
import { createServer, type Socket } from 'node:net';
import { GdbConnection } from './connection.js';
import { DEFAULT_MAX_PACKET_BYTES } from './packets.js';
import { GdbProtocol, type ProtocolOptions } from './protocol.js';
import type { GdbTarget } from './target.js';

/** Settings of {@link startGdbServer}. */
export interface GdbServerOptions extends ProtocolOptions {
  /** TCP port; 0 (the default) lets the system pick a free one. */
  readonly port?: number;
  /** Address to listen on (default 127.0.0.1: the stub lets anyone connected change the guest). */
  readonly host?: string;
  /**
   * Called when handling a packet throws (a broken invariant in the stub or
   * the target); the client is disconnected. Default: one line on stderr.
   */
  readonly onError?: (error: unknown) => void;
  /** Called when a gdb's connection has ended (kill, detach, or gdb went away). */
  readonly onDisconnect?: () => void;
}

/** A listening stub. */
export interface GdbServer {
  /** The port it listens on (the one picked when asked for 0). */
  readonly port: number;
  /** The address it listens on. */
  readonly host: string;
  /** Disconnects the client, if any, and stops listening. */
  close(): Promise<void>;
}

function reportToStderr(error: unknown): void {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`hvsim gdb stub: ${text}\n`);
}

/** Starts the GDB stub for `target` and resolves once it listens. */
export async function startGdbServer(target: GdbTarget, options: GdbServerOptions = {}): Promise<GdbServer> {
  const host = options.host ?? '127.0.0.1';
  const onError = options.onError ?? reportToStderr;
  const packetSize = options.packetSize ?? DEFAULT_MAX_PACKET_BYTES;
  let active: Socket | null = null;

  const server = createServer((socket) => {
    if (active !== null) {
      socket.destroy();
      return;
    }
    active = socket;
    socket.setNoDelay(true);
    const fail = (error: unknown): void => {
      connection.dispose();
      socket.destroy();
      onError(error);
    };
    const guarded = (task: () => void): void => {
      try {
        task();
      } catch (error) {
        fail(error);
      }
    };
    const connection = new GdbConnection(
      new GdbProtocol(target, { ...options, packetSize }),
      {
        write: (bytes) => {
          socket.write(bytes);
        },
        schedule: (task) => {
          setImmediate(() => guarded(task));
        },
        close: () => {
          // kill/detach: the session is over, so the next gdb may connect
          // while this socket is still closing.
          if (active === socket) active = null;
          socket.end();
        },
      },
      packetSize,
    );
    socket.on('data', (chunk: Buffer) => guarded(() => connection.receive(chunk)));
    // A socket error is followed by 'close', which ends the session.
    socket.on('error', () => {});
    socket.on('close', () => {
      connection.dispose();
      if (active === socket) active = null;
      options.onDisconnect?.();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('gdb stub: listening socket has no TCP address');

  return {
    port: address.port,
    host,
    close: () =>
      new Promise<void>((resolve, reject) => {
        active?.destroy();
        server.close((error) => (error === undefined ? resolve() : reject(error)));
      }),
  };
}
