import { argumentsOf, str } from '../common';
import type { JsonObject } from '../wire';

/**
 * Responses output items whose call the client runs (or, for a shell in the provider's container,
 * that ran on the model's say): each is judged by tool policy and recorded as a tool call. Named
 * as the record names them; `mcp_call` items ran at the provider and are recorded apart.
 */
export const CLIENT_CALL_ITEMS: ReadonlySet<string> = new Set([
  'function_call',
  'custom_tool_call',
  'local_shell_call',
  'shell_call',
  'apply_patch_call',
  'computer_call',
]);

/** The result items the client sends back for them. */
export const CLIENT_RESULT_ITEMS: ReadonlySet<string> = new Set(
  [...CLIENT_CALL_ITEMS].map((t) => `${t}_output`),
);

/** A client call item's id, tool name and input, as rules judge it and the record keeps it. */
export function clientCall(item: JsonObject): { id: string; name: string; input: unknown } | undefined {
  const id = str(item.call_id) ?? str(item.id) ?? '';
  switch (item.type) {
    case 'function_call':
    case 'custom_tool_call': {
      const name = str(item.name) ?? 'unknown';
      // A tool inside an MCP server's `namespace` tool (Codex offers each server's tools so:
      // namespace `mcp__github`, name `echo`) is called by its name alone; judged and recorded by
      // its whole name, `mcp__github__echo`, as Claude Code names the same tool, or a deny rule on
      // `mcp__github__*` let Codex's calls through. Other namespaces (Codex's own
      // `multi_agent_v1`: `spawn_agent`) keep the names rules already use.
      const namespace = str(item.namespace);
      return {
        id,
        name: namespace?.startsWith('mcp__') ? `${namespace}__${name}` : name,
        input: argumentsOf(item.arguments ?? item.input),
      };
    }
    case 'local_shell_call':
      return { id, name: 'local_shell', input: item.action ?? {} };
    case 'shell_call':
      return { id, name: 'shell', input: item.action ?? {} };
    case 'apply_patch_call':
      return { id, name: 'apply_patch', input: item.operation ?? {} };
    case 'computer_call':
      return { id, name: 'computer', input: item.action ?? item.actions ?? {} };
    default:
      return undefined;
  }
}
