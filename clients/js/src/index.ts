/**
 * @gatewayasgi/client: a typed WebSocket client for gatewayasgi gateways.
 *
 * ```ts
 * const client = new GatewayClient<ServerEvents, ClientEvents>("wss://example.com/chat", {
 *   auth: async () => ({ token: await getToken() }),
 * });
 * await client.connect();
 * const reply = await client.emitWithAck("join", { room: "lobby" });
 * ```
 */
export { backoffDelay } from "./backoff.js";
export { GatewayClient } from "./client.js";
export type { Encoded, WireProtocolName } from "./codec.js";
export {
  AckError,
  AckTimeoutError,
  BufferFullError,
  ConnectError,
  DisconnectedError,
  type ErrorFrameData,
  GatewayClientError,
  ReconnectFailedError,
  StreamTimeoutError,
} from "./errors.js";
export type { FrameId, InboundFrame } from "./frames.js";
export { isTerminalClose, isTerminalStatus } from "./handshake.js";
export type { Lifecycle } from "./listeners.js";
export { GatewayStream } from "./streams.js";
export type {
  AbortSignalLike,
  AckArgs,
  AckOptions,
  AnyEvents,
  AnyListener,
  AttachOptions,
  BufferOverflow,
  ConnectionState,
  DataArgs,
  EventData,
  EventName,
  EventReply,
  GatewayClientOptions,
  LifecycleEvents,
  QueryParams,
  RecoveryReason,
  ServerListener,
  SessionEvent,
  StreamArgs,
  StreamItem,
  StreamOptions,
  StreamReadOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
