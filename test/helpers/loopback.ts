import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
export interface Listening {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** Ends open keep-alive connections too, so closing never waits on a client's idle socket. */
  stop(): Promise<void>;
}

/** Starts a test server on 127.0.0.1, port 0 (the upstream mocks and MCP gates all listen this way). */
export async function listenOnLoopback(server: Server): Promise<Listening> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port free on 127.0.0.1 right now, for a child process that must be told its port up front. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
