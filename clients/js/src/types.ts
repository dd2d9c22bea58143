/**
 * Public types: event maps, options, lifecycle events and the WebSocket shape the client needs.
 * Nothing here refers to DOM or Node types, so the declarations work in either host.
 */
import type { DisconnectedError } from "./errors.js";

/**
 * An event map: event name -> payload type, or -> a function type `(data: D) => R` when the
 * receiver answers (a client `emitWithAck` resolving with `R`, or a server call the client answers
 * with `R`). Use an interface or a type literal; the default allows any event with any payload.
 */
export type AnyEvents = Record<string, any>;

/** The string keys of an event map. */
export type EventName<M> = keyof M & string;

/** The payload of event `E` in map `M`. */
export type EventData<M, E extends keyof M> = M[E] extends (data: infer D) => unknown ? D : M[E];

/** What the receiver answers for event `E`: the function's return type, else `unknown`. */
export type EventReply<M, E extends keyof M> = M[E] extends (data: never) => infer R
  ? Awaited<R>
  : unknown;

/** The arguments after the event name: `data` is optional when its type admits `undefined`. */
export type DataArgs<D> = undefined extends D ? [data?: D] : [data: D];

/** Like `DataArgs`, followed by the optional per-call ack options. */
export type AckArgs<D> = undefined extends D
  ? [data?: D, options?: AckOptions]
  : [data: D, options?: AckOptions];

/**
 * The item type of stream event `E`: declare it as `(data: D) => AsyncIterable<Item>` in the
 * client event map; else `unknown`.
 */
export type StreamItem<M, E extends keyof M> = M[E] extends (data: never) => AsyncIterable<infer I>
  ? I
  : unknown;

/** Like `DataArgs`, followed by the optional stream options. */
export type StreamArgs<D> = undefined extends D
  ? [data?: D, options?: StreamOptions]
  : [data: D, options?: StreamOptions];

/**
 * The members of an `AbortSignal` (browsers, Node) the client uses; declared here so the
 * package's types need no DOM library.
 */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** How a stream is read: the options `client.stream` and `client.attachStream` share. */
export interface StreamReadOptions {
  /**
   * Aborting it cancels the stream on the server (`$cancel`); the loop and `result` reject
   * with the signal's `reason` (an `AbortError` by default).
   */
  signal?: AbortSignalLike;
  /**
   * Milliseconds the reader may wait for each item (the first one included) before the stream
   * is cancelled and the loop rejects with `StreamTimeoutError`. Default: no limit (the server's
   * `stream_timeout` bounds the whole stream).
   */
  timeout?: number;
}

/** Options of `client.stream(event, data, options)`. */
export interface StreamOptions extends StreamReadOptions {
  /**
   * Makes it a keyed stream (`{"event", "data", "id", "key"}`): it outlives the connection that
   * started it, and `client.attachStream(key)` re-attaches to it, from another connection (a
   * page reload) too. A stream with this key that runs already is superseded, when the gateway's
   * `can_attach(client, key)` allows it.
   */
  key?: string;
}

/** Options of `client.attachStream(key, options)`. */
export interface AttachOptions extends StreamReadOptions {
  /**
   * The sequence number of the last item the reader has (`stream.position` of the stream it
   * read before): the stream sends the kept items after it. Default: 0, from the first item.
   */
  after?: number;
}

/** A listener for server event `E`; for a server call its return value (or Promise) is the answer. */
export type ServerListener<M, E extends keyof M> = (
  data: EventData<M, E>,
) => M[E] extends (data: never) => infer R ? R | Promise<Awaited<R>> : unknown;

/** A catch-all listener: every server event, after the event's own listeners. */
export type AnyListener = (event: string, data: unknown) => unknown;

/** Per-call options of `emitWithAck`. */
export interface AckOptions {
  /** Milliseconds to wait for the reply, from the call (buffered time counts). Default: `ackTimeout`. */
  timeout?: number;
}

/** Query parameters; `null` and `undefined` values are left out. */
export type QueryParams = Record<string, string | number | boolean | null | undefined>;

/** What happens to a frame emitted while offline when the buffer is full. */
export type BufferOverflow = "drop-oldest" | "reject-new";

/** Where the client is: see `GatewayClient.state`. */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

/** The standard WebSocket members the client uses (browser `WebSocket`, Node 22's, or `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  /** The subprotocol the server selected (`""` for none), once open. */
  readonly protocol?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  // Handler parameters are `any` so that implementations with richer event types fit.
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor: `globalThis.WebSocket` or `import { WebSocket } from "ws"`. */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
) => WebSocketLike;

/** Options of `new GatewayClient(url, options)`. Every one is optional. */
export interface GatewayClientOptions {
  /** The WebSocket implementation. Default: `globalThis.WebSocket` (browsers, Node >= 22). */
  WebSocket?: WebSocketConstructor;
  /**
   * Query parameters added to the URL on every connection attempt, or a (possibly async) function
   * called before each attempt, so a refreshed token is used on reconnect. A handshake guard reads
   * them as `client.query_params` (browsers cannot set WebSocket headers).
   */
  auth?: QueryParams | (() => QueryParams | Promise<QueryParams>);
  /**
   * WebSocket subprotocols to offer (`@WebSocketGateway(..., subprotocols=[...])`). A resuming
   * client offers `gatewayasgi` and its resume credential before these.
   */
  protocols?: string | string[];
  /**
   * How frames look on the wire: `"json"` (text frames, the default) or `"msgpack"` (the same
   * frames in MessagePack, `Uint8Array` data as `bin` both ways; the client offers the
   * `gatewayasgi.msgpack` subprotocol, which the server must select: it registers
   * `MessagePack()`). A `Date` is not sent as text in MessagePack (it is a timestamp extension,
   * which the server refuses): send `date.toISOString()`.
   */
  wireProtocol?: "json" | "msgpack";
  /**
   * Resume the session after a reconnection (gateways with `recovery=Recovery(...)`): the client
   * offers its resume credential as a subprotocol, and the server replays the frames it missed.
   * Nothing to configure: a gateway without recovery never starts a session. `false` offers
   * nothing (every connection is a new session). Default `true`.
   */
  recover?: boolean;
  /** Reconnect after a non-terminal close. Default `true`. */
  reconnect?: boolean;
  /** Backoff base in ms: attempt n waits a random time below `min(max, base * 2^n)`. Default 1000. */
  reconnectDelay?: number;
  /** Backoff cap in ms. Default 30000. */
  reconnectDelayMax?: number;
  /** Failed attempts in a row before giving up (`reconnect_failed`). Default `Infinity`. */
  maxReconnectAttempts?: number;
  /** Milliseconds a handshake may take before the attempt counts as failed. Default 20000. */
  connectTimeout?: number;
  /** Default `emitWithAck` timeout in ms. Default 10000. */
  ackTimeout?: number;
  /** Frames kept while offline, sent in order on connect. Default 100; 0 disables buffering. */
  maxBufferedMessages?: number;
  /**
   * When the buffer is full: `"drop-oldest"` (default) drops the oldest frame (its ack rejects
   * with `BufferFullError`); `"reject-new"` keeps the buffer and makes `emit` throw `BufferFullError`.
   */
  bufferOverflow?: BufferOverflow;
  /**
   * The gateway's `heartbeat_event`: such a frame is answered at once, so a server with
   * `heartbeat_interval` set keeps the connection. `null` turns the answer off. Default `"heartbeat"`.
   */
  heartbeatEvent?: string | null;
}

/**
 * Why frames may have been lost (docs/recovery.md): a resume failed (`"expired"`: the window
 * passed or the session ended; `"trimmed"`: the history no longer holds every missed frame;
 * `"epoch"`: the history was lost, e.g. the server restarted; `"invalid"`: a malformed credential),
 * or the server lost frames for an open connection (`"epoch"`, `"trimmed"`).
 */
export type RecoveryReason = "expired" | "trimmed" | "epoch" | "invalid" | (string & {});

/** A `$session` frame: the session a connection serves. */
export interface SessionEvent {
  /** The session's id (the server's `client.id`). */
  id: string;
  /** True when this connection resumed the session asked for, every missed frame following. */
  recovered: boolean;
  /** Why a resume failed, or why frames were lost on an open connection; else `null`. */
  reason: RecoveryReason | null;
}

/** Events about the connection itself, listened to with `client.lifecycle.on(...)`. */
export interface LifecycleEvents {
  /** A connection attempt starts (`attempt` 0 is the first, then each reconnection). */
  connecting: { attempt: number };
  /**
   * The connection is ready and the offline buffer has been flushed. `recovered`: it resumed the
   * previous session (same id and rooms, missed frames follow, in order, each once). `reason` is
   * there only when the server refused the resume the client asked for: a new session, resync.
   */
  connect: { recovered: boolean; reason?: RecoveryReason };
  /** The server's `$session` frame: on a reconnection before `connect`, on a first connection after. */
  session: SessionEvent;
  /**
   * The server lost frames for this open connection (its history was lost or fell behind): the
   * session (id, rooms) goes on, but frames may be missing. Resync the app.
   */
  recovery_failed: { id: string; reason: RecoveryReason | null };
  /**
   * The server's `$gap` frame: frames for this client may have been lost on the way between its
   * workers (`reason` `"backplane"`: a broker connection was cut, and is back; `"unknown"` when the
   * frame names none). Sent by gateways without recovery (with recovery the missed frames are
   * replayed instead); the connection stays open. Refetch what the lost events would have told.
   */
  gap: { reason: string };
  /** An open connection closed. `error` is what pending acks were rejected with. */
  disconnect: { code: number; reason: string; willReconnect: boolean; error: DisconnectedError };
  /** An attempt failed before the socket opened (refused handshake, timeout, auth function threw). */
  connect_error: { attempt: number; error: Error };
  /** A reconnection is scheduled: attempt number (1-based) and the chosen delay in ms. */
  reconnect_attempt: { attempt: number; delay: number };
  /** `maxReconnectAttempts` attempts failed in a row; the client is `closed`. */
  reconnect_failed: { attempts: number };
  /** A listener threw, or the server sent a frame that is not `{"event": string, ...}`. */
  error: { error: Error };
}
