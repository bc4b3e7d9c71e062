import * as vscode from 'vscode';
import { MCP_PROVIDER_ID } from '../ids';
import { type GatewaySession, gatewayProvider, type HttpServerDefinition } from './gateway-provider';

/*
 * VS Code's MCP server definition API (1.101). The extension's engine is ^1.100 and its
 * @types/vscode has no such API, so the parts used are declared here and looked up at run time.
 */
type McpHttpServerDefinitionCtor = new (
  label: string,
  uri: vscode.Uri,
  headers?: Record<string, string>,
  version?: string,
) => HttpServerDefinition;

interface McpLm {
  registerMcpServerDefinitionProvider(
    id: string,
    provider: ReturnType<typeof gatewayProvider<HttpServerDefinition>>,
  ): vscode.Disposable;
}

/**
 * Offers the bridge's MCP gateway (`<bridge>/mcp`) to VS Code's own agent mode and chat, as the
 * signed-in user (docs/extension.md#the-mcp-gateway-in-every-agent). `session` is read each time
 * VS Code asks (undefined: signed out, or the gateway turned off); `onDidChange` fires on sign-in,
 * sign-out, a new key or a setting change. On a VS Code without the API it does nothing.
 */
export function registerGatewayDefinition(
  session: () => GatewaySession | undefined,
  onDidChange: (listener: () => void) => { dispose(): void },
): vscode.Disposable {
  const lm = vscode.lm as unknown as Partial<McpLm> | undefined;
  const Definition = (vscode as unknown as { McpHttpServerDefinition?: McpHttpServerDefinitionCtor })
    .McpHttpServerDefinition;
  if (typeof lm?.registerMcpServerDefinitionProvider !== 'function' || typeof Definition !== 'function')
    return new vscode.Disposable(() => undefined);
  const provider = gatewayProvider(session, onDidChange, (label, url, version) => {
    return new Definition(label, vscode.Uri.parse(url), {}, version);
  });
  return lm.registerMcpServerDefinitionProvider(MCP_PROVIDER_ID, provider);
}
