/**
 * JSON-RPC and MCP error codes (the SDK's `ErrorCode`). Here so that naming one does not load the
 * MCP SDK, whose schemas cost an idle bridge about 7 MB; the SDK is loaded on first use.
 */
export const RpcCode = {
  ConnectionClosed: -32000,
  RequestTimeout: -32001,
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
} as const;

/**
 * The SDK's `McpError`, told by its name and code rather than `instanceof`: the SDK ships CommonJS
 * and ESM builds, and a lazily imported copy is not the class another module required.
 */
export function isMcpError(err: unknown): err is Error & { code: number } {
  return (
    err instanceof Error && err.name === 'McpError' && typeof (err as { code?: unknown }).code === 'number'
  );
}

/**
 * Why a tool call failed, for its record. The SDK rejects a request its caller cancelled with a
 * RequestTimeout error too, so the caller's signal tells a cancellation from a timeout.
 */
export function callFailure(err: unknown, signal: AbortSignal): 'cancelled' | 'timeout' | 'error' {
  if (signal.aborted) return 'cancelled';
  if (isMcpError(err) && err.code === RpcCode.RequestTimeout) return 'timeout';
  return 'error';
}
