import { isObject, parseArguments, str } from '../common';
import { eventJson } from '../injection';
import {
  type FrameRewriter,
  frame,
  framedHold,
  type SseFrame,
  type ToolHold,
  type ToolJudge,
} from '../tool-hold';

/** Only `tool_use` blocks are the client's to run; server and MCP tool blocks ran at the provider. */
const CLIENT_TOOL = 'tool_use';

interface Held {
  index: number;
  block: Record<string, unknown>;
  json: string;
  /** Everything held since the block started, in order: released as is when the call is allowed. */
  frames: string[];
  /** Events of no block (pings) that arrived meanwhile: released after it, never replaced. */
  others: string[];
}

/**
 * Holds each `tool_use` block from `content_block_start` to `content_block_stop`; everything else
 * passes as it came. A denied block becomes a text block at the same index, and `message_delta`
 * says `end_turn` when no tool_use block reached the client.
 */
class MessagesHold implements FrameRewriter {
  private held: Held | undefined;
  private denied = 0;
  private allowed = 0;

  constructor(private readonly judge: ToolJudge) {}

  onFrame(f: SseFrame): string {
    const data = f.ev ? eventJson(f.ev) : undefined;
    const h = this.held;
    if (h) {
      const index = data && typeof data.index === 'number' ? data.index : undefined;
      h.frames.push(f.raw);
      if (index !== h.index) {
        h.others.push(f.raw);
        return '';
      }
      if (
        data?.type === 'content_block_delta' &&
        isObject(data.delta) &&
        data.delta.type === 'input_json_delta'
      )
        h.json += str(data.delta.partial_json) ?? '';
      return data?.type === 'content_block_stop' ? this.release() : '';
    }
    if (!data) return f.raw;
    if (
      data.type === 'content_block_start' &&
      typeof data.index === 'number' &&
      isObject(data.content_block) &&
      data.content_block.type === CLIENT_TOOL
    ) {
      this.held = { index: data.index, block: data.content_block, json: '', frames: [f.raw], others: [] };
      return '';
    }
    if (
      data.type === 'message_delta' &&
      this.denied > 0 &&
      this.allowed === 0 &&
      isObject(data.delta) &&
      data.delta.stop_reason === 'tool_use'
    )
      return frame(f.ev?.event, { ...data, delta: { ...data.delta, stop_reason: 'end_turn' } });
    return f.raw;
  }

  end(): string {
    // Cut off mid-block: judged on what arrived, so a denied call never leaks on a broken stream.
    return this.held ? this.release() : '';
  }

  private release(): string {
    const h = this.held!;
    this.held = undefined;
    const input = h.json === '' && isObject(h.block.input) ? h.block.input : parseArguments(h.json);
    const denial = this.judge({ id: str(h.block.id) ?? '', name: str(h.block.name) ?? 'unknown', input });
    if (!denial) {
      this.allowed++;
      return h.frames.join('');
    }
    this.denied++;
    const index = h.index;
    return (
      frame('content_block_start', {
        type: 'content_block_start',
        index,
        content_block: { type: 'text', text: '' },
      }) +
      frame('content_block_delta', {
        type: 'content_block_delta',
        index,
        delta: { type: 'text_delta', text: denial.message },
      }) +
      frame('content_block_stop', { type: 'content_block_stop', index }) +
      h.others.join('')
    );
  }
}

export const messagesHold: ToolHold = {
  createStream: (judge) => framedHold(new MessagesHold(judge)),

  // Tools the provider runs itself, on the model's say, with nothing held before they run: an MCP
  // connector's servers and code execution. Served under a deny rule, a member could name them and
  // have the provider run what the rule denies.
  unheld: (body) => {
    if (Array.isArray(body.mcp_servers) && body.mcp_servers.length > 0)
      return 'Tool-call rules apply to you, and the tools of `mcp_servers` run at the provider before they can be checked: connect MCP servers through the bridge’s gateway (/mcp), or leave them out.';
    const tools = Array.isArray(body.tools) ? body.tools : [];
    if (tools.some((t) => isObject(t) && typeof t.type === 'string' && t.type.startsWith('code_execution')))
      return 'Tool-call rules apply to you, and code execution runs at the provider before its calls can be checked: leave the code execution tool out.';
    return null;
  },

  rewriteJson(json, judge) {
    if (!isObject(json) || !Array.isArray(json.content)) return undefined;
    let denied = false;
    let remaining = 0;
    const content = (json.content as unknown[]).map((b) => {
      if (!isObject(b) || b.type !== CLIENT_TOOL) return b;
      const denial = judge({ id: str(b.id) ?? '', name: str(b.name) ?? 'unknown', input: b.input ?? {} });
      if (!denial) {
        remaining++;
        return b;
      }
      denied = true;
      return { type: 'text', text: denial.message };
    });
    if (!denied) return undefined;
    const stop = remaining === 0 && json.stop_reason === 'tool_use' ? 'end_turn' : json.stop_reason;
    return { ...json, content, stop_reason: stop };
  },
};
