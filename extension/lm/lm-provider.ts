import * as vscode from 'vscode';
import type { Credentials } from '../auth/sign-in';
import { type ChatModelEntry, ChatModelList } from './chat-models';
import { ChatRequestError, streamChat } from './lm-stream';
import {
  anthropicRequest,
  type ChatMessage,
  type ChatPart,
  type ChatTool,
  conversationSessionId,
  estimateTokens,
} from './lm-wire';

/** The vendor the models are contributed under (`contributes.languageModelChatProviders`). */
export const LM_VENDOR = 'aibridge';

/** The models offered when the caller names none: Anthropic ids the bridge serves on `/anthropic`. */
export const DEFAULT_CHAT_MODELS: readonly string[] = [
  'claude-sonnet-4-5',
  'claude-opus-4-1',
  'claude-haiku-4-5',
];

/*
 * The language model chat provider API is stable since VS Code 1.104; the extension builds against
 * @types/vscode 1.100 and runs on 1.100, so the few shapes it uses are declared here and the API is
 * looked up at run time.
 */
interface ChatInformation {
  readonly id: string;
  readonly name: string;
  readonly family: string;
  readonly version: string;
  readonly tooltip?: string;
  readonly maxInputTokens: number;
  readonly maxOutputTokens: number;
  readonly capabilities: { readonly imageInput?: boolean; readonly toolCalling?: boolean | number };
}
interface RequestMessage {
  readonly role: vscode.LanguageModelChatMessageRole;
  readonly content: ReadonlyArray<unknown>;
}
interface ResponseOptions {
  readonly tools?: readonly { name: string; description: string; inputSchema?: object }[];
}
interface ChatProvider {
  readonly onDidChangeLanguageModelChatInformation?: (listener: () => void) => { dispose(): void };
  provideLanguageModelChatInformation(
    o: { silent: boolean },
    t: vscode.CancellationToken,
  ): Promise<ChatInformation[]>;
  provideLanguageModelChatResponse(
    model: ChatInformation,
    messages: readonly RequestMessage[],
    options: ResponseOptions,
    progress: vscode.Progress<vscode.LanguageModelTextPart | vscode.LanguageModelToolCallPart>,
    token: vscode.CancellationToken,
  ): Promise<void>;
  provideTokenCount(
    model: ChatInformation,
    text: string | RequestMessage,
    t: vscode.CancellationToken,
  ): Promise<number>;
}
type Register = (vendor: string, provider: ChatProvider) => vscode.Disposable;

const MAX_INPUT = 200_000;
const MAX_OUTPUT = 8_192;

function isDataPart(p: unknown): p is { mimeType: string; data: Uint8Array } {
  return (
    typeof p === 'object' &&
    p !== null &&
    'mimeType' in p &&
    typeof p.mimeType === 'string' &&
    'data' in p &&
    p.data instanceof Uint8Array
  );
}

function resultText(content: readonly unknown[]): string {
  return content.map((c) => (c instanceof vscode.LanguageModelTextPart ? c.value : '')).join('');
}

/** VS Code's parts as plain data (lm-wire.ts); parts of kinds it does not know are left out. */
function plainPart(p: unknown): ChatPart | undefined {
  if (p instanceof vscode.LanguageModelTextPart) return { kind: 'text', text: p.value };
  if (p instanceof vscode.LanguageModelToolCallPart)
    return { kind: 'toolCall', callId: p.callId, name: p.name, input: p.input };
  if (p instanceof vscode.LanguageModelToolResultPart)
    return { kind: 'toolResult', callId: p.callId, text: resultText(p.content) };
  if (isDataPart(p) && p.mimeType.startsWith('image/'))
    return { kind: 'image', mimeType: p.mimeType, data: p.data };
  return undefined;
}

function plainMessage(m: RequestMessage): ChatMessage {
  return {
    role: m.role === vscode.LanguageModelChatMessageRole.Assistant ? 'assistant' : 'user',
    parts: m.content.map(plainPart).filter((p): p is ChatPart => p !== undefined),
  };
}

export interface BridgeChatDeps {
  /** The signed-in credentials, or undefined when signed out (the request then fails with a message). */
  credentials: () => Credentials | undefined;
  /** The models to offer (chat-models.ts); default: the bridge's list for the user, else DEFAULT_CHAT_MODELS. */
  models?: ChatModelList;
}

function chatInformation(m: ChatModelEntry): ChatInformation {
  return {
    id: m.id,
    name: m.name,
    family: m.id,
    version: m.id,
    tooltip: 'Through AI Bridge, on your bridge key',
    maxInputTokens: MAX_INPUT,
    maxOutputTokens: MAX_OUTPUT,
    capabilities: { imageInput: true, toolCalling: true },
  };
}

/**
 * Contributes the bridge's models to VS Code's chat (Copilot Chat's model picker, and every
 * extension that calls `vscode.lm.selectChatModels({ vendor: 'aibridge' })`). Returns undefined on a
 * VS Code without the API (before 1.104): the rest of the extension works as before.
 */
export function registerBridgeChatModels(deps: BridgeChatDeps): vscode.Disposable | undefined {
  const register = (vscode.lm as unknown as { registerLanguageModelChatProvider?: Register })
    .registerLanguageModelChatProvider;
  if (typeof register !== 'function') return undefined;
  const models = deps.models ?? new ChatModelList({ fallback: () => DEFAULT_CHAT_MODELS });
  const provider: ChatProvider = {
    onDidChangeLanguageModelChatInformation: models.onDidChange,
    provideLanguageModelChatInformation: async () =>
      (await models.models(deps.credentials())).map(chatInformation),
    async provideLanguageModelChatResponse(model, messages, options, progress, token) {
      const c = deps.credentials();
      if (!c) throw new Error('AI Bridge: sign in to use this model.');
      const plain = messages.map(plainMessage);
      const tools: ChatTool[] = (options.tools ?? []).map((t) => ({
        name: t.name,
        description: t.description,
        inputSchema: t.inputSchema,
      }));
      const ac = new AbortController();
      const sub = token.onCancellationRequested(() => ac.abort());
      // A token cancelled already never fires its event: nothing is sent (and nothing billed) then.
      if (token.isCancellationRequested) ac.abort();
      try {
        await streamChat({
          url: c.url,
          key: c.key,
          sessionId: conversationSessionId(plain),
          body: anthropicRequest(model.id, plain, tools, model.maxOutputTokens),
          signal: ac.signal,
          onPart: (p) =>
            progress.report(
              p.kind === 'text'
                ? new vscode.LanguageModelTextPart(p.text)
                : new vscode.LanguageModelToolCallPart(p.callId, p.name, p.input),
            ),
        });
      } catch (err) {
        if (token.isCancellationRequested) return;
        // The bridge's own sentence ("the team's budget is spent"), not a generic failure.
        if (err instanceof ChatRequestError) throw new Error(`AI Bridge: ${err.message}`);
        throw err;
      } finally {
        sub.dispose();
      }
    },
    provideTokenCount: async (_model, text) =>
      estimateTokens(typeof text === 'string' ? text : plainMessage(text)),
  };
  return register(LM_VENDOR, provider);
}
