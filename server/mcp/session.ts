import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { ToolExecution } from '../../shared/interception';
import type { ToolPolicyMark } from '../../shared/tool-policy';
import { isObject } from '../providers/common';
import type { InjectedCall, OfferedTool } from '../providers/injection';
import { describe, type McpConnection } from './connection';
import { callFailure } from './rpc';
import type { McpServerConfig } from './servers';

/** One tool offered in a session: where it runs. */
export interface SessionTool {
  offered: OfferedTool;
  tool: Tool;
  server: string;
  connection: McpConnection;
  timeoutMs: number;
}

/** What running one injected call produced: the text the model receives and the audit facts. */
export interface ToolRun {
  server: string;
  text: string;
  isError: boolean;
  execution: ToolExecution;
  /** The tool-call rule that denied (then it was not run) or flagged the call, when one matched. */
  policy?: ToolPolicyMark;
}

const TRUNCATED = '\n[truncated by the bridge]';

/**
 * What a member (and the model) is told when a shared server fails a call: what it answered (an
 * error body, an internal address) is the admins' to read, as its reason for being down is.
 */
export const SHARED_CALL_FAILURE = 'the server failed to answer (admins are told why)';

/** Where a shared server's real failure goes: the hub's mcp.warning to admins (and its log). */
export type WarnAdmins = (server: string, message: string) => void;

/**
 * The text a member (and the model) is shown when a server's transport fails `what` ("a call of
 * x", "a read of y") with `message`. A member's own per-user connection's reason is theirs to see;
 * a shared server's is what it answered (an error body, an internal address), so it goes to admins
 * through `warn` and the member gets SHARED_CALL_FAILURE. One place, so the gateway and injection
 * cannot drift on what leaks.
 */
export function failureForMember(
  server: Pick<McpServerConfig, 'name' | 'auth'>,
  what: string,
  message: string,
  warn: WarnAdmins,
): string {
  if (server.auth.type === 'per_user') return message;
  warn(server.name, `${what} failed: ${message}`);
  return SHARED_CALL_FAILURE;
}

/** A tool result as the text the model receives: text parts as they are, other parts named. */
export function resultText(result: CallToolResult, limit: number): string {
  const parts: string[] = [];
  for (const c of result.content ?? []) {
    switch (c.type) {
      case 'text':
        parts.push(c.text);
        break;
      case 'image':
      case 'audio':
        parts.push(`[${c.type} ${c.mimeType}, ${Math.floor((c.data.length * 3) / 4)} bytes]`);
        break;
      case 'resource':
        parts.push('text' in c.resource ? c.resource.text : `[resource ${c.resource.uri}]`);
        break;
      case 'resource_link':
        parts.push(`[resource ${c.uri}${c.name ? ` (${c.name})` : ''}]`);
        break;
    }
  }
  if (parts.length === 0 && result.structuredContent !== undefined)
    parts.push(JSON.stringify(result.structuredContent));
  const text = parts.join('\n');
  return text.length > limit ? text.slice(0, limit - TRUNCATED.length) + TRUNCATED : text;
}

/**
 * The injected tools one request may use, for one user: built per request from the connections
 * the user has, so a server that is down or a missing credential simply leaves its tools out.
 */
export class ToolSession {
  private readonly byName = new Map<string, SessionTool>();

  constructor(
    tools: readonly SessionTool[],
    private readonly resultLimit: number,
    /** Told why a shared server failed a call (the hub warns admins); the member is not. */
    private readonly sharedFailure: WarnAdmins = () => undefined,
  ) {
    for (const t of tools) this.byName.set(t.offered.name, t);
  }

  get tools(): OfferedTool[] {
    return [...this.byName.values()].map((t) => t.offered);
  }

  get size(): number {
    return this.byName.size;
  }

  isInjected = (name: string): boolean => this.byName.has(name);

  /** Which server and tool a name stands for. */
  describe(name: string): { server: string; tool: string } | undefined {
    const t = this.byName.get(name);
    return t ? { server: t.server, tool: t.tool.name } : undefined;
  }

  /** What the model receives for a call the bridge will not run (`text`), and why for the record. */
  refuse(call: InjectedCall, text: string, error: string): ToolRun {
    return this.ending(call)(text, 'not_run', error);
  }

  /** Runs one call; never throws: failures, timeouts and bad arguments are error results. */
  async run(call: InjectedCall, signal: AbortSignal): Promise<ToolRun> {
    const t = this.byName.get(call.name);
    const done = this.ending(call);
    if (!t) return done(`Unknown tool ${call.name}.`, 'error', 'unknown tool');
    if (!isObject(call.input)) {
      const error = 'the arguments are not a JSON object';
      return done(`The tool was not run: ${error}.`, 'error', error);
    }
    try {
      const result = await t.connection.call(t.tool.name, call.input, t.timeoutMs, signal);
      const text = resultText(result, this.resultLimit);
      if (result.isError === true)
        return done(text, 'error', text.slice(0, 300) || 'the tool reported an error');
      return done(text, 'ok', null);
    } catch (err) {
      const failure = callFailure(err, signal);
      if (failure === 'cancelled') {
        const error = 'cancelled: the client left or the bridge is shutting down';
        return done(`The tool call was ${error}.`, 'cancelled', error);
      }
      if (failure === 'timeout') {
        const error = `timed out after ${t.timeoutMs} ms`;
        return done(`The tool ${error}.`, 'timeout', error);
      }
      const error = failureForMember(
        t.connection.server,
        `a call of ${t.tool.name}`,
        describe(err),
        this.sharedFailure,
      );
      return done(`The tool failed: ${error}`, 'error', error);
    }
  }

  /** Starts timing a call: what it ends with, for the model and the record. */
  private ending(
    call: InjectedCall,
  ): (text: string, outcome: ToolExecution['outcome'], error: string | null) => ToolRun {
    const t = this.byName.get(call.name);
    const startedAt = new Date();
    const t0 = performance.now();
    return (text, outcome, error) => ({
      server: t?.server ?? '',
      text,
      isError: outcome !== 'ok',
      execution: {
        tool: t?.tool.name ?? call.name,
        outcome,
        startedAt: startedAt.toISOString(),
        durationMs: Math.round((performance.now() - t0) * 100) / 100,
        resultBytes: Buffer.byteLength(text),
        error,
      },
    });
  }
}
