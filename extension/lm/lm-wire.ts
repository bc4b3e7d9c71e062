import { createHash } from 'node:crypto';

/**
 * VS Code's chat messages as plain data, so the conversion is tested without VS Code: the adapter
 * (lm-provider.ts) maps `LanguageModelTextPart`, `LanguageModelToolCallPart`,
 * `LanguageModelToolResultPart` and `LanguageModelDataPart` (images) onto these.
 */
export type ChatPart =
  | { kind: 'text'; text: string }
  | { kind: 'toolCall'; callId: string; name: string; input: object }
  | { kind: 'toolResult'; callId: string; text: string; isError?: boolean }
  | { kind: 'image'; mimeType: string; data: Uint8Array };

export interface ChatMessage {
  role: 'user' | 'assistant';
  parts: ChatPart[];
}

export interface ChatTool {
  name: string;
  description: string;
  inputSchema?: object;
}

type Block = Record<string, unknown>;

/** The image types the Messages API accepts; others are left out with a note in the text. */
const IMAGE_TYPES: ReadonlySet<string> = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

function block(p: ChatPart): Block {
  switch (p.kind) {
    case 'text':
      return { type: 'text', text: p.text };
    case 'toolCall':
      return { type: 'tool_use', id: p.callId, name: p.name, input: p.input };
    case 'toolResult':
      return {
        type: 'tool_result',
        tool_use_id: p.callId,
        content: p.text,
        ...(p.isError ? { is_error: true } : {}),
      };
    case 'image':
      return IMAGE_TYPES.has(p.mimeType)
        ? {
            type: 'image',
            source: { type: 'base64', media_type: p.mimeType, data: Buffer.from(p.data).toString('base64') },
          }
        : { type: 'text', text: `[an attachment of type ${p.mimeType} was left out]` };
  }
}

/**
 * The Messages API body for a chat request: consecutive messages of one role merged (the API wants
 * turns to alternate), tool results first in their user turn (the API requires them to open it),
 * empty text dropped, streaming on.
 */
export function anthropicRequest(
  model: string,
  messages: readonly ChatMessage[],
  tools: readonly ChatTool[],
  maxTokens: number,
): Record<string, unknown> {
  const turns: { role: ChatMessage['role']; content: Block[] }[] = [];
  for (const m of messages) {
    const content = m.parts.filter((p) => p.kind !== 'text' || p.text !== '').map(block);
    if (content.length === 0) continue;
    const last = turns.at(-1);
    if (last?.role === m.role) last.content.push(...content);
    else turns.push({ role: m.role, content });
  }
  for (const t of turns) {
    if (t.role !== 'user') continue;
    t.content = [
      ...t.content.filter((b) => b.type === 'tool_result'),
      ...t.content.filter((b) => b.type !== 'tool_result'),
    ];
  }
  return {
    model,
    max_tokens: maxTokens,
    stream: true,
    messages: turns,
    ...(tools.length > 0
      ? {
          tools: tools.map((t) => ({
            name: t.name,
            description: t.description,
            input_schema: t.inputSchema ?? { type: 'object', properties: {} },
          })),
        }
      : {}),
  };
}

/**
 * A session id for a conversation: VS Code gives none, but a conversation's first user message
 * stays the same on every request of it. Same conversation, same id; the text itself is not sent.
 */
export function conversationSessionId(messages: readonly ChatMessage[]): string {
  const first = messages.find((m) => m.role === 'user');
  const text = (first?.parts ?? []).map((p) => (p.kind === 'text' ? p.text : '')).join('\n');
  return `vscode-chat-${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

/** About four characters a token: an estimate, for VS Code's context-window bookkeeping only. */
export function estimateTokens(input: string | ChatMessage): number {
  if (typeof input === 'string') return Math.ceil(input.length / 4);
  let chars = 0;
  for (const p of input.parts) {
    if (p.kind === 'text' || p.kind === 'toolResult') chars += p.text.length;
    else if (p.kind === 'toolCall') chars += p.name.length + JSON.stringify(p.input).length;
    // An image costs about 1,600 tokens whatever its bytes (Anthropic's estimate for ~1 megapixel).
    else chars += 1600 * 4;
  }
  return Math.ceil(chars / 4);
}
