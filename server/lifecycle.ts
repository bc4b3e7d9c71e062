import type { FastifyBaseLogger } from 'fastify';

/**
 * What must be released, registered as it is created and released in reverse order: on shutdown,
 * and when building the bridge fails halfway (so a failed start leaves no store open and no MCP
 * process running). A failing release is logged and the rest still run.
 */
export class Lifecycle {
  private readonly closers: { name: string; close: () => Promise<unknown> | unknown }[] = [];

  constructor(private readonly log: FastifyBaseLogger) {}

  onClose(name: string, close: () => Promise<unknown> | unknown): void {
    this.closers.push({ name, close });
  }

  async close(): Promise<void> {
    for (let c = this.closers.pop(); c; c = this.closers.pop()) {
      try {
        await c.close();
      } catch (err) {
        this.log.error({ err }, `closing ${c.name} failed`);
      }
    }
  }
}
