import type { CredentialCipher } from './cipher';
import type { McpServerBodyT, McpServerConfig } from './servers';

type Transport = McpServerBodyT['transport'];

/** Every value of an HTTP server's headers or a stdio server's env: tokens and keys, as far as the bridge knows. */
function valuesOf(t: Transport): Record<string, string> | undefined {
  return t.type === 'http' ? t.headers : t.env;
}

/** Whether a definition carries header or env values (they are stored sealed, so they need the credentials key). */
export function hasTransportValues(t: Transport): boolean {
  return Object.keys(valuesOf(t) ?? {}).length > 0;
}

/** Each value in a slot of its own, so a sealed value moved to another server or name fails to open. */
function slotOf(server: string, t: Transport, name: string): string {
  return `mcp_server:${server}:${t.type === 'http' ? 'header' : 'env'}:${name}`;
}

function mapValues(t: Transport, f: (name: string, value: string) => string): Transport {
  const values = valuesOf(t);
  if (values === undefined) return t;
  const mapped = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, f(k, v)]));
  return t.type === 'http' ? { ...t, headers: mapped } : { ...t, env: mapped };
}

/** The server as it is stored: header and env values sealed with the credentials key. */
export function sealTransport(s: McpServerConfig, cipher: CredentialCipher): McpServerConfig {
  if (s.transportSealed || !hasTransportValues(s.transport)) return s;
  return {
    ...s,
    transport: mapValues(s.transport, (name, v) => cipher.seal(v, slotOf(s.name, s.transport, name))),
    transportSealed: true,
  };
}

/**
 * The server as a connection needs it: header and env values in clear. Definitions stored before
 * values were sealed are used as they are. A value that cannot be opened (no credentials key, or
 * another one) is left out, never sent sealed; `onError` says which.
 */
export function openTransport(
  s: McpServerConfig,
  cipher: CredentialCipher | undefined,
  onError: (name: string, reason: string) => void,
): McpServerConfig {
  if (!s.transportSealed) return s;
  const values = valuesOf(s.transport) ?? {};
  const opened: Record<string, string> = {};
  for (const [name, sealed] of Object.entries(values)) {
    if (!cipher) {
      onError(name, 'it is sealed and AIBRIDGE_MCP_CREDENTIALS_KEY is not set');
      continue;
    }
    try {
      opened[name] = cipher.open(sealed, slotOf(s.name, s.transport, name));
    } catch {
      onError(name, 'it does not open with AIBRIDGE_MCP_CREDENTIALS_KEY (another key, or altered)');
    }
  }
  const transport: Transport =
    s.transport.type === 'http' ? { ...s.transport, headers: opened } : { ...s.transport, env: opened };
  const { transportSealed: _sealed, ...rest } = s;
  return { ...rest, transport };
}
