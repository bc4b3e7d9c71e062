import assert from 'node:assert/strict';
import { messagesApi } from '../../server/providers/anthropic/messages';
import { typedText } from '../../server/providers/common';
import { chatCompletionsApi } from '../../server/providers/openai/chat-completions';
import { responsesApi } from '../../server/providers/openai/responses';
import { detectClient } from '../../server/proxy/client-detect';
import { withClientSession } from '../../server/proxy/client-session';

const SESSION = 'b342b37d-84c8-4fab-bb59-09052ac540ae';
const COPILOT_SYSTEM = `You are the GitHub Copilot CLI.\n<session_context>\nSession folder: /home/dev/.copilot/session-state/${SESSION}\n\nContents:\n- files/\n</session_context>`;
const COPILOT_USER =
  '<current_datetime>2026-12-01T14:54:11.449+00:00</current_datetime>\n\nSay hello to the bridge';
const COPILOT_HEADERS = {
  'user-agent': 'Anthropic/JS 0.94.0',
  'x-stainless-lang': 'js',
  'x-initiator': 'user',
  'x-interaction-type': 'conversation-user',
};

describe('the prompt is what the developer typed', () => {
  it('Copilot CLI: the <current_datetime> it prefixes in the same block is dropped (Messages)', () => {
    const facts = messagesApi.describeRequest(
      {
        model: 'm',
        system: [{ type: 'text', text: COPILOT_SYSTEM }],
        messages: [{ role: 'user', content: [{ type: 'text', text: COPILOT_USER }] }],
      },
      COPILOT_HEADERS,
    );
    assert.equal(facts.prompt, 'Say hello to the bridge');
  });

  it('Copilot CLI on Chat Completions: string content, and its session from the system prompt', () => {
    const body = {
      model: 'gpt-4.1',
      messages: [
        { role: 'system', content: COPILOT_SYSTEM },
        { role: 'user', content: COPILOT_USER },
      ],
    };
    const facts = chatCompletionsApi.describeRequest(body, COPILOT_HEADERS);
    assert.equal(facts.prompt, 'Say hello to the bridge');
    const client = detectClient(COPILOT_HEADERS);
    assert.equal(client, 'copilot-cli');
    assert.equal(withClientSession(facts, client, COPILOT_HEADERS, body).sessionId, SESSION);
    // Another client's system prompt saying the same is not taken as a session.
    assert.equal(withClientSession(facts, 'openai-sdk-js', {}, body).sessionId, null);
  });

  it('a member-chosen system prompt full of session markers on one line costs linear time', () => {
    // Any member can declare x-aibridge-client: copilot-cli; the session scan must not be quadratic.
    const hostile = `${'<session_context> Session folder: '.repeat(60_000)}x`;
    const body = {
      model: 'gpt-5',
      messages: [
        { role: 'system', content: hostile },
        { role: 'user', content: 'hi' },
      ],
    };
    const facts = chatCompletionsApi.describeRequest(body, COPILOT_HEADERS);
    const t0 = performance.now();
    assert.equal(withClientSession(facts, 'copilot-cli', COPILOT_HEADERS, body).sessionId, null);
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `${ms.toFixed(0)} ms for 2 MB of markers`);
  });

  it('Claude Code: <system-reminder> blocks before and after the typed text, in their own parts or not', () => {
    const facts = messagesApi.describeRequest(
      {
        model: 'm',
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'text',
                text: '<system-reminder>\nAs you answer, use the context below.\n</system-reminder>',
              },
              {
                type: 'text',
                text: "Fix the failing test\n\n<system-reminder>The TodoWrite tool hasn't been used</system-reminder>",
              },
            ],
          },
        ],
      },
      { 'user-agent': 'claude-cli/2.0.0 (external, cli)' },
    );
    assert.equal(facts.prompt, 'Fix the failing test');
  });

  it('Codex: <environment_context>, <user_instructions> and AGENTS.md items are skipped (Responses)', () => {
    const input = [
      {
        type: 'message',
        role: 'user',
        content: [
          {
            type: 'input_text',
            text: '# AGENTS.md instructions for /repo\n\n<INSTRUCTIONS>\nUse tabs.\n</INSTRUCTIONS>',
          },
        ],
      },
      {
        type: 'message',
        role: 'user',
        content: [
          { type: 'input_text', text: '<environment_context>\n  <cwd>/repo</cwd>\n</environment_context>' },
        ],
      },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'rename foo to bar' }] },
      {
        type: 'message',
        role: 'user',
        content: [{ type: 'input_text', text: '<user_instructions>be brief</user_instructions>' }],
      },
    ];
    const facts = responsesApi.describeRequest({ model: 'gpt-5', input }, { originator: 'codex_exec' });
    assert.equal(facts.prompt, 'rename foo to bar');
  });

  it('keeps what the user typed, tags included, when it is not an injected block', () => {
    assert.equal(typedText('<div>hello</div>'), '<div>hello</div>');
    assert.equal(typedText('explain <system-reminder> please'), 'explain <system-reminder> please');
    assert.equal(typedText('<current_datetime>x</current_datetime>'), null);
    assert.equal(typedText('  plain  '), '  plain  ');
    // A block typed in the middle is the user's.
    assert.equal(
      typedText('a <current_datetime>x</current_datetime> b'),
      'a <current_datetime>x</current_datetime> b',
    );
  });

  it('stays linear on a huge text full of tags', () => {
    const big = `${'<current_datetime>'.repeat(50_000)} typed ${'</system-reminder>'.repeat(50_000)}`;
    const t0 = Date.now();
    typedText(big);
    assert.ok(Date.now() - t0 < 500);
  });
});

describe('client detection for the IDE clients', () => {
  it('x-aibridge-client names only the clients the extension configures', () => {
    assert.equal(detectClient({ 'x-aibridge-client': 'vscode-chat' }), 'vscode-chat');
    assert.equal(
      detectClient({
        'x-aibridge-client': 'copilot-cli',
        'user-agent': 'OpenAI/JS 5.20.1',
        'x-stainless-lang': 'js',
      }),
      'copilot-cli',
    );
    assert.equal(
      detectClient({
        'x-aibridge-client': 'my-own-label',
        'user-agent': 'OpenAI/JS 5.20.1',
        'x-stainless-lang': 'js',
      }),
      'openai-sdk-js',
    );
  });

  it('x-aibridge-session-id is the session, before what the wire API names', () => {
    const facts = messagesApi.describeRequest({ model: 'm', messages: [], metadata: { user_id: 'u' } }, {});
    assert.equal(facts.sessionId, 'u');
    assert.equal(
      withClientSession(facts, 'vscode-chat', { 'x-aibridge-session-id': 'chat-1' }, {}).sessionId,
      'chat-1',
    );
  });
});
