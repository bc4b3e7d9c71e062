import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type {
  CallToolResult,
  GetPromptResult,
  ListPromptsResult,
  ListResourcesResult,
  ReadResourceResult,
  ServerCapabilities,
  Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { FastifyBaseLogger } from 'fastify';
import { withoutUrlSecrets } from '../core/url-secrets';
import { type McpServerConfig, toolAllowed } from './servers';

const VERSION = '0.1.0';
/** Stderr of a stdio server kept for the log when it fails, at most. */
const STDERR_KEEP = 4096;
/**
 * Pages of a server's tool list read at most: a server that answers every page with another
 * cursor would otherwise be listed for ever, its connection never settling (and every request
 * waiting for it) while the list grows in memory.
 */
export const MAX_TOOL_PAGES = 100;
/**
 * Tools a server may offer (after its `tools` patterns), and what their definitions may take as
 * JSON: they go into every model request the bridge injects them into, and into every gateway
 * `tools/list`. A server listing 5,000 tools of 2 KB each made a 100-byte request 16 MB upstream.
 * Past either the server is down, with the reason; its `tools.allow` narrows a large one.
 */
export const MAX_TOOLS = 256;
export const MAX_TOOL_LIST_BYTES = 512 * 1024;

export type ConnectionState = 'connecting' | 'ready' | 'down' | 'closed';

/** A server's offered tools past MAX_TOOLS or MAX_TOOL_LIST_BYTES. */
class ToolListTooLarge extends Error {}

export interface ConnectionOptions {
  connectTimeoutMs: number;
  log: FastifyBaseLogger;
  /** The credential (shared secret or the user's token) the server receives; never logged. */
  credential?: string | undefined;
  /** OAuth instead of a fixed credential (HTTP only): the SDK adds the token and refreshes it. */
  authProvider?: OAuthClientProvider | undefined;
  /** Told whenever the tool list changes: fetched again, or the server notified. */
  onTools?: (() => void) | undefined;
  /** Variables a stdio server starts with besides the SDK's few defaults; its own `env` wins. */
  childEnv?: Readonly<Record<string, string>> | undefined;
}

/**
 * One MCP client session with one server (for everyone, or for one user with their credential):
 * connects, keeps the allowed tools, follows `notifications/tools/list_changed`, calls tools. It
 * never throws from `connect` or `refresh`: a server that is down is a state, with its reason.
 */
export class McpConnection {
  state: ConnectionState = 'connecting';
  lastError: string | null = null;
  tools: Tool[] = [];
  refreshedAt: string | null = null;
  /** When the last connection attempt started (ms since the epoch). */
  attemptedAt = 0;
  /** Tool list notifications received. */
  listChanges = 0;
  private client: Client | undefined;
  private pending: Promise<void> | undefined;
  /** Rejecters of the calls waiting for an answer, for when the server turns out to be gone. */
  private readonly waiting = new Set<(err: Error) => void>();
  private probing = false;
  private stderr = '';

  constructor(
    readonly server: McpServerConfig,
    private readonly opts: ConnectionOptions,
  ) {}

  /** Connects (once at a time) and lists the tools; resolves when ready or down. */
  connect(): Promise<void> {
    this.pending ??= this.open().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** Resolves once a connection attempt in progress has settled. */
  async settled(): Promise<void> {
    await this.pending;
  }

  /** The SDK's transports are loaded on first use (server/mcp/rpc.ts says why). */
  private async transport(): Promise<Transport> {
    const t = this.server.transport;
    const { auth } = this.server;
    const cred = this.opts.credential;
    if (t.type === 'http') {
      const headers: Record<string, string> = { ...t.headers };
      if (cred !== undefined && !this.opts.authProvider)
        headers[auth.header] = auth.scheme ? `${auth.scheme} ${cred}` : cred;
      const { StreamableHTTPClientTransport } = await import(
        '@modelcontextprotocol/sdk/client/streamableHttp.js'
      );
      return new StreamableHTTPClientTransport(new URL(t.url), {
        requestInit: { headers },
        ...(this.opts.authProvider ? { authProvider: this.opts.authProvider } : {}),
      });
    }
    const { getDefaultEnvironment, StdioClientTransport } = await import(
      '@modelcontextprotocol/sdk/client/stdio.js'
    );
    // A server's own env wins in either spelling: tools read the lower-case one first.
    const inherited: Record<string, string> = { ...this.opts.childEnv };
    for (const name of Object.keys(t.env ?? {})) {
      delete inherited[name.toUpperCase()];
      delete inherited[name.toLowerCase()];
    }
    const env: Record<string, string> = { ...getDefaultEnvironment(), ...inherited, ...t.env };
    if (cred !== undefined && auth.env) env[auth.env] = cred;
    const transport = new StdioClientTransport({
      command: t.command,
      args: t.args ?? [],
      env,
      ...(t.cwd ? { cwd: t.cwd } : {}),
      stderr: 'pipe',
    });
    // Read stderr so the child never blocks on a full pipe; keep its tail for when it fails.
    transport.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
    });
    return transport;
  }

  private async open(): Promise<void> {
    await this.closeClient();
    this.state = 'connecting';
    this.attemptedAt = Date.now();
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const client = new Client(
      { name: 'aibridge', version: VERSION },
      {
        capabilities: {},
        listChanged: {
          tools: {
            // Not the SDK's own refresh: it reads the first page only, and a paginated server's
            // other tools would vanish until the next periodic refresh.
            autoRefresh: false,
            onChanged: () => {
              this.listChanges++;
              if (this.client !== client || this.state === 'closed') return;
              this.fetchTools(client).catch((err: unknown) => {
                // A list past the caps is the server's state, not a passing failure: down, as a
                // connect or a periodic refresh that found it would leave it.
                if (err instanceof ToolListTooLarge) {
                  this.fail(err);
                  return;
                }
                this.opts.log.warn(
                  { server: this.server.name, err: describe(err) },
                  'mcp: tool refresh failed',
                );
              });
            },
          },
        },
      },
    );
    client.onclose = () => {
      if (this.client !== client || this.state === 'closed') return;
      this.fail(
        new Error(`the connection closed${this.stderr ? `: ${this.stderr.trim().split('\n').pop()}` : ''}`),
      );
    };
    client.onerror = () => {
      // Most transport errors surface again as failed requests or a closed connection. One does
      // not: an HTTP server that dies mid-call leaves the call waiting for its timeout, as the SDK
      // keeps trying to resume the call's stream. With calls waiting, a ping tells which it is.
      if (this.waiting.size > 0) void this.checkAlive(client);
    };
    this.client = client;
    try {
      await client.connect(await this.transport(), { timeout: this.opts.connectTimeoutMs });
      await this.fetchTools(client);
      this.state = 'ready';
      this.lastError = null;
    } catch (err) {
      this.fail(err);
      await this.closeClient();
    }
  }

  private fail(err: unknown): void {
    if (this.state === 'closed') return;
    this.state = 'down';
    // Shown as the server's state and in warnings: a token in its URL's query stays out of both.
    this.lastError = withoutUrlSecrets(describe(err));
    // lastError is the short reason users see; the log keeps the whole error and its cause.
    this.opts.log.warn(
      { err, server: this.server.name },
      `mcp: ${this.server.name} is down: ${this.lastError}`,
    );
  }

  private async fetchTools(client: Client): Promise<void> {
    const all: Tool[] = [];
    let cursor: string | undefined;
    // The whole list within the connect limit, not each page: a server answering every page just in
    // time would otherwise hold the connection (and whoever waits for it) for pages × the limit.
    const deadline = Date.now() + this.opts.connectTimeoutMs;
    let pages = 0;
    do {
      if (++pages > MAX_TOOL_PAGES) throw new Error(`its tool list goes on past ${MAX_TOOL_PAGES} pages`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`its tool list took longer than ${this.opts.connectTimeoutMs} ms`);
      const page = await client.listTools(cursor ? { cursor } : {}, { timeout: left });
      // Only the tools offered are kept as pages come: a long list of tools the patterns leave out
      // costs nothing, and the offered ones are bounded as they arrive.
      for (const t of page.tools) if (this.offered(t)) all.push(t);
      if (all.length > MAX_TOOLS)
        throw new ToolListTooLarge(
          `it offers more than ${MAX_TOOLS} tools: narrow them with its \`tools.allow\` patterns`,
        );
      cursor = page.nextCursor;
    } while (cursor);
    const bytes = Buffer.byteLength(JSON.stringify(all));
    if (bytes > MAX_TOOL_LIST_BYTES)
      throw new ToolListTooLarge(
        `its tool definitions take ${Math.ceil(bytes / 1024)} KB, more than ${MAX_TOOL_LIST_BYTES / 1024} KB (every model request they are injected into would carry them): narrow them with its \`tools.allow\` patterns`,
      );
    this.setTools(all);
  }

  /** A tool the server's patterns offer; tools that only run as tasks cannot answer within one model request. */
  private offered(t: Tool): boolean {
    return toolAllowed(t.name, this.server.tools) && t.execution?.taskSupport !== 'required';
  }

  private setTools(tools: Tool[]): void {
    const before = JSON.stringify(this.tools);
    this.tools = tools;
    this.refreshedAt = new Date().toISOString();
    // Told only of real changes: a periodic refresh that finds the same tools is no news.
    if (JSON.stringify(this.tools) !== before) this.opts.onTools?.();
  }

  /** Lists the tools again, or reconnects a server that was down. */
  async refresh(): Promise<void> {
    if (this.state === 'closed' || this.pending) return;
    if (this.state !== 'ready' || !this.client) return this.connect();
    try {
      await this.fetchTools(this.client);
    } catch (err) {
      this.fail(err);
    }
  }

  async call(
    tool: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    if (this.state !== 'ready' || !this.client) throw new Error(`the server is ${this.state}`);
    let lost: (err: Error) => void = () => undefined;
    const gone = new Promise<never>((_, reject) => {
      lost = reject;
    });
    this.waiting.add(lost);
    try {
      const result = await Promise.race([
        this.client.callTool({ name: tool, arguments: args }, undefined, { timeout: timeoutMs, signal }),
        gone,
      ]);
      return result as CallToolResult;
    } finally {
      this.waiting.delete(lost);
    }
  }

  /** After a transport error with calls waiting: a server that does not answer a ping is gone, and so are they. */
  private async checkAlive(client: Client): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await client.ping({ timeout: this.opts.connectTimeoutMs });
    } catch (err) {
      if (this.client !== client) return;
      const e = new Error(`the server went away mid-call (${describe(err)})`);
      for (const reject of this.waiting) reject(e);
      this.waiting.clear();
      this.fail(e);
      await this.closeClient();
    } finally {
      this.probing = false;
    }
  }

  /** What the server said it offers at `initialize` (resources, prompts); undefined when not connected. */
  get capabilities(): ServerCapabilities | undefined {
    return this.state === 'ready' ? this.client?.getServerCapabilities() : undefined;
  }

  private ready(): Client {
    if (this.state !== 'ready' || !this.client) throw new Error(`the server is ${this.state}`);
    return this.client;
  }

  /** One page of the server's resources (the MCP gateway offers them as they are, renamed). */
  listResources(
    cursor: string | undefined,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<ListResourcesResult> {
    return this.ready().listResources(cursor ? { cursor } : {}, { timeout: timeoutMs, signal });
  }

  readResource(uri: string, timeoutMs: number, signal: AbortSignal): Promise<ReadResourceResult> {
    return this.ready().readResource({ uri }, { timeout: timeoutMs, signal });
  }

  listPrompts(
    cursor: string | undefined,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<ListPromptsResult> {
    return this.ready().listPrompts(cursor ? { cursor } : {}, { timeout: timeoutMs, signal });
  }

  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<GetPromptResult> {
    return this.ready().getPrompt(
      { name, ...(args ? { arguments: args } : {}) },
      { timeout: timeoutMs, signal },
    );
  }

  private async closeClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    // Closing a client whose transport already failed rejects again with the failure fail() logged.
    await client?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.state = 'closed';
    // A connect in progress reports its own failure (fail()); closing only waits for it to settle.
    await this.pending?.catch(() => undefined);
    this.state = 'closed';
    await this.closeClient();
  }
}

/** A failure as one line for logs and status, without anything a credential could be part of. */
export function describe(err: unknown): string {
  const e = err as { message?: string; code?: unknown; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  const message = (e.message ?? String(err)).split('\n')[0]!.slice(0, 300);
  return cause && !message.includes(String(cause)) ? `${message} (${cause})` : message;
}
