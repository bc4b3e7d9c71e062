import {
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERROR_CODES, type ErrorCode } from '../../shared/errors';
import type { ClientLimits } from '../config';
import { addressKey } from './address-share';
import type { TrustedProxies } from './trusted-proxies';

/** The provider whose routes serve `url`, to answer in its error shape; undefined: the bridge's own shape. */
export type ErrorShapeFor = (url: string) =>
  | {
      errorBody(
        status: number,
        code: ErrorCode,
        message: string,
        headers?: Readonly<Record<string, string>>,
      ): unknown;
    }
  | undefined;

/**
 * Connection-level limits no route can forget (docs/security.md, "Connections"): a cap on open
 * connections per client address, and a deadline for each request's body. The headers deadline
 * is node's own `headersTimeout` (see `httpOptions`). Responses are never timed here: a model
 * stream may run for many minutes once its request has arrived.
 */
export class ConnectionGuard {
  private readonly open = new Map<string, number>();
  /**
   * Open connections, for the shutdown to find the ones that never sent a byte. Node's headers
   * deadline closes those while it runs, but its checks stop when the server closes, and a
   * shutdown then waited its whole grace period (30 s) for connections that had asked nothing.
   */
  private readonly connections = new Set<Socket>();
  /** Connections on which a request has begun (its headers all arrived). */
  private readonly spoke = new WeakSet<Socket>();

  constructor(
    private readonly limits: Pick<
      ClientLimits,
      'headersTimeoutMs' | 'bodyTimeoutMs' | 'connectionsPerAddress'
    >,
    private readonly trusted: TrustedProxies,
    private readonly shapeFor: ErrorShapeFor,
  ) {}

  /**
   * Options for `http.createServer` (fastify's `http`). Node checks the headers deadline on an
   * interval (30 s by default, which would let a slowloris socket live 40 s): check often enough
   * that a socket is cut within a quarter of the deadline past it.
   */
  httpOptions(): ServerOptions {
    return {
      // Node's whole-request deadline would also cut long streamed responses; bodies are timed in `timeBody`.
      requestTimeout: 0,
      headersTimeout: this.limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(this.limits.headersTimeoutMs / 4))),
    };
  }

  /**
   * Fastify's `clientErrorHandler`: errors node raises before a request exists (headers too slow,
   * too large, unparseable) answered in the bridge's shape, then the socket is closed.
   */
  readonly clientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, code, message]: [number, ErrorCode, string] =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [
            ERROR_CODES.request_timeout.status,
            'request_timeout',
            `The request headers did not arrive within ${this.limits.headersTimeoutMs / 1000}s.`,
          ]
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'invalid_request', 'The request headers are too large.']
          : [400, 'invalid_request', 'The request is not valid HTTP.'];
    const body = JSON.stringify({ error: { code, message } });
    if (socket.writable)
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nX-AIBridge-Error-Code: ${code}\r\nConnection: close\r\n\r\n${body}`,
      );
    socket.destroy();
  };

  /** Open connections from `address` right now (tests and metrics). */
  openFrom(address: string): number {
    return this.open.get(addressKey(address)) ?? 0;
  }

  attach(server: Server): void {
    server.on('connection', (socket: Socket) => {
      this.connections.add(socket);
      socket.once('close', () => this.connections.delete(socket));
      this.admit(socket);
    });
    // Not on `upgrade`: the live-event routes answer other paths' upgrades only as its sole listener.
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.spoke.add(req.socket);
      if (this.limits.bodyTimeoutMs > 0) this.timeBody(req, res);
    });
  }

  /**
   * At shutdown: connections that never sent a byte hold nothing to finish. One whose request
   * has begun (its headers still arriving, an upgrade) is left to the shutdown's own answers.
   */
  endSilent(): void {
    for (const socket of this.connections) {
      if (socket.bytesRead === 0) socket.destroy();
      // Headers begun and not finished: node's deadline checks stop with the server, so the
      // shutdown gives them the same deadline itself (a 503 if they finish in time).
      else if (!this.spoke.has(socket))
        setTimeout(() => socket.destroy(), this.limits.headersTimeoutMs).unref();
    }
  }

  /**
   * Counts the connection against its address and destroys it, before a byte is read, when the
   * address already holds its share. A trusted proxy carries many clients, so it is not counted.
   */
  private admit(socket: Socket): void {
    const cap = this.limits.connectionsPerAddress;
    const remote = socket.remoteAddress;
    if (cap === 0 || remote === undefined || this.trusted.trusts(remote)) return;
    // An IPv6 host is routinely given a whole /64: its addresses count as one (address-share.ts).
    const address = addressKey(remote);
    const n = (this.open.get(address) ?? 0) + 1;
    if (n > cap) {
      socket.destroy();
      return;
    }
    this.open.set(address, n);
    socket.once('close', () => {
      const left = (this.open.get(address) ?? 1) - 1;
      if (left <= 0) this.open.delete(address);
      else this.open.set(address, left);
    });
  }

  /**
   * A body still incomplete after the deadline gets 408 (when nothing was answered yet) and the
   * connection is closed. An answer sent before the body (a 401 or 403 from the headers alone)
   * does not stop the clock: node goes on reading the body to keep the connection, and a client
   * trickling one behind a refusal held its connection for as long as it liked.
   */
  private timeBody(req: IncomingMessage, res: ServerResponse): void {
    if (req.complete) return;
    const timer = setTimeout(() => {
      if (req.complete) return;
      const socket = req.socket;
      if (res.headersSent) {
        socket.destroy();
        return;
      }
      const seconds = Math.round(this.limits.bodyTimeoutMs / 100) / 10;
      const message = `The request body did not arrive within ${seconds}s.`;
      const { status } = ERROR_CODES.request_timeout;
      const provider = this.shapeFor(req.url ?? '/');
      const body = JSON.stringify(
        provider
          ? provider.errorBody(status, 'request_timeout', message)
          : { error: { code: 'request_timeout', message } },
      );
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'x-aibridge-error-code': 'request_timeout',
        connection: 'close',
      });
      res.end(body, () => socket.destroy());
    }, this.limits.bodyTimeoutMs);
    timer.unref();
    const done = (): void => clearTimeout(timer);
    req.once('end', done);
    // The request's own close: the body read to its end, or the connection gone.
    req.once('close', done);
  }
}
