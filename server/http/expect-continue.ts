import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/** Requests that asked for `100 Continue` and have not had it yet. */
const asked = new WeakSet<IncomingMessage>();

/**
 * Node answers `Expect: 100-continue` with `100 Continue` itself, before any of the bridge's code
 * has seen the request, unless something listens for it: a client with a bad key was told to send
 * its body (up to the body limit) only to be refused. The request goes the usual way instead, and
 * `100 Continue` is sent once its key is judged (`continueIfAsked`); a refusal is the only answer
 * such a client gets, and its body is never sent.
 */
export function holdContinue(server: Server): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    asked.add(req);
    server.emit('request', req, res);
  });
}

/** Sends `100 Continue` to a request that asked for it, once: its body is wanted now. */
export function continueIfAsked(req: IncomingMessage, res: ServerResponse): void {
  if (!asked.delete(req) || res.headersSent || res.writableEnded || res.destroyed) return;
  res.writeContinue();
}
