/** What a connection attempt needs before its socket exists: the implementation, the URL, the rules. */
import { GatewayClientError } from "./errors.js";
import type { QueryParams, WebSocketConstructor } from "./types.js";

const POLICY_VIOLATION = 1008;

/** Close codes after which the client does not reconnect: policy (1008) and the app range. */
export function isTerminalClose(code: number): boolean {
  return code === POLICY_VIOLATION || (code >= 4000 && code <= 4999);
}

const RETRIED_STATUSES = new Set([408, 429]);

/**
 * Whether a handshake refused with HTTP `status` is final: 4xx (a guard, an origin check, no such
 * path) but 408 and 429. 5xx (503 at capacity) is retried. The Python client's rule too.
 */
export function isTerminalStatus(status: number): boolean {
  return status >= 400 && status <= 499 && !RETRIED_STATUSES.has(status);
}

/**
 * The HTTP status of a refused handshake, from the error its socket reported, where the
 * implementation says it: `ws` errors with "Unexpected server response: 403". Browsers and
 * Node 22's `WebSocket` never expose it (`undefined`).
 */
export function refusedStatus(error: Error | undefined): number | undefined {
  const match = error && /Unexpected server response: (\d{3})\b/.exec(error.message);
  return match ? Number(match[1]) : undefined;
}

/** The given constructor, else the host's global `WebSocket`, else a clear error. */
export function resolveWebSocket(given: WebSocketConstructor | undefined): WebSocketConstructor {
  const found = given ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!found) {
    throw new GatewayClientError(
      'No WebSocket implementation: pass options.WebSocket (e.g. `import { WebSocket } from "ws"`) on Node < 22',
    );
  }
  return found;
}

/**
 * The URL of one attempt: `url` (relative to the page in browsers; http(s) becomes ws(s)) with
 * each non-null parameter set in its query string. (A resume credential is never put here: it
 * travels as a subprotocol.)
 */
export function handshakeUrl(url: string, params: QueryParams): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const parsed = new URL(url, base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) parsed.searchParams.set(name, String(value));
  }
  return parsed.href;
}
