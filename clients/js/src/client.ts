/**
 * `GatewayClient`: one logical connection to a gatewayasgi gateway over successive WebSockets.
 *
 * States: idle -> connecting -> connected -> (reconnecting -> connecting -> connected)* -> closed.
 * Every socket gets its own handlers; a handler whose socket is no longer `this.socket` does
 * nothing, so a late event from an abandoned socket can never disturb the current one.
 */
import { PendingAcks } from "./acks.js";
import { backoffDelay } from "./backoff.js";
import { type OutboundFrame, SendBuffer } from "./buffer.js";
import { answerCall } from "./calls.js";
import { type Codec, codecFor } from "./codec.js";
import {
  handshakeUrl,
  isTerminalClose,
  isTerminalStatus,
  refusedStatus,
  resolveWebSocket,
} from "./handshake.js";
import {
  AckError,
  ConnectError,
  DisconnectedError,
  GatewayClientError,
  ReconnectFailedError,
} from "./errors.js";
import {
  ATTACH_EVENT,
  CANCEL_EVENT,
  ERROR_EVENT,
  GAP_EVENT,
  type InboundFrame,
  errorData,
  gapReason,
} from "./frames.js";
import { Lifecycle, type Listener, ListenerRegistry, callSafely, toError } from "./listeners.js";
import { type SessionRecovery, SessionTracker } from "./recovery.js";
import { GatewayStream, type StreamHooks } from "./streams.js";
import type {
  AckArgs,
  AnyEvents,
  AnyListener,
  AttachOptions,
  ConnectionState,
  DataArgs,
  EventData,
  EventName,
  EventReply,
  GatewayClientOptions,
  RecoveryReason,
  ServerListener,
  SessionEvent,
  StreamArgs,
  StreamItem,
  StreamReadOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";

const OPEN = 1;
const NORMAL_CLOSURE = 1000;
/** Closes a socket the client gives up on without ending its session on the server. */
const GOING_AWAY = 1001;
const ABNORMAL_CLOSURE = 1006;
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

const noop = (): void => undefined;

/**
 * A typed client for one gateway namespace.
 *
 * @typeParam ServerEvents - events the server sends: name -> payload, or name -> `(data) => answer`
 *   for server calls the client answers
 * @typeParam ClientEvents - events the client emits: name -> payload, or name -> `(data) => reply`
 *   for `emitWithAck`
 */
export class GatewayClient<
  ServerEvents extends object = AnyEvents,
  ClientEvents extends object = AnyEvents,
> {
  /** Connection lifecycle events: `connecting`, `connect`, `disconnect`, `reconnect_attempt`, ... */
  readonly lifecycle = new Lifecycle();

  private readonly url: string;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly auth: GatewayClientOptions["auth"];
  private readonly protocols: readonly string[] | undefined;
  private readonly reconnect: boolean;
  private readonly reconnectDelay: number;
  private readonly reconnectDelayMax: number;
  private readonly maxReconnectAttempts: number;
  private readonly connectTimeout: number;
  private readonly ackTimeout: number;
  private readonly heartbeatEvent: string | null;
  /** How frames look on the wire (the `wireProtocol` option). */
  private readonly codec: Codec;

  private currentState: ConnectionState = "idle";
  /** The socket of the current attempt or connection; `undefined` between them. */
  private socket: WebSocketLike | undefined;
  /** Reconnection attempts since the last successful open: the backoff exponent. */
  private failures = 0;
  /** Bumped by every attempt and by `finish`, so an attempt outlived by its auth call stops. */
  private attemptSeq = 0;
  private retryTimer: unknown;
  private connectTimer: unknown;
  /** Why the client is `closed`: thrown by `emit`, rejected by `emitWithAck` until `connect()`. */
  private closeError: Error | undefined;
  private readonly acks = new PendingAcks();
  /** The streams being read, by request id (from the acks' counter). */
  private readonly streams = new Map<number, GatewayStream<unknown>>();
  private readonly streamHooks: StreamHooks = {
    cancel: (id, sent) => this.cancelStream(id, sent),
    forget: (id) => this.streams.delete(id),
  };
  private readonly buffer: SendBuffer;
  private readonly listeners = new ListenerRegistry();
  private anyListeners: AnyListener[] = [];
  private waiters: Waiter[] = [];
  /** Session recovery's bookkeeping (see recovery.ts). */
  private readonly recovery: SessionRecovery;
  /** `$gap` frames received (see `gaps`). */
  private gapCount = 0;

  constructor(url: string | { readonly href: string }, options: GatewayClientOptions = {}) {
    this.url = typeof url === "string" ? url : url.href;
    this.WebSocketImpl = resolveWebSocket(options.WebSocket);
    this.auth = options.auth;
    this.codec = codecFor(options.wireProtocol);
    this.protocols =
      typeof options.protocols === "string" ? [options.protocols] : options.protocols;
    this.recovery = new SessionTracker(options.recover ?? true);
    this.reconnect = options.reconnect ?? true;
    this.reconnectDelay = options.reconnectDelay ?? 1000;
    this.reconnectDelayMax = options.reconnectDelayMax ?? 30000;
    this.maxReconnectAttempts = options.maxReconnectAttempts ?? Infinity;
    this.connectTimeout = options.connectTimeout ?? 20000;
    this.ackTimeout = options.ackTimeout ?? 10000;
    this.buffer = new SendBuffer(
      options.maxBufferedMessages ?? 100,
      options.bufferOverflow ?? "drop-oldest",
    );
    this.heartbeatEvent =
      options.heartbeatEvent === undefined ? "heartbeat" : options.heartbeatEvent;
  }

  /** `idle` (never connected), `connecting`, `connected`, `reconnecting` (waiting out a backoff) or `closed`. */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** True while a socket is open. */
  get connected(): boolean {
    return this.currentState === "connected";
  }

  /**
   * Whether the current connection resumed the previous session (same id and rooms; the frames
   * missed meanwhile were replayed, in order, each once). False while not connected.
   */
  get recovered(): boolean {
    return this.connected && this.recovery.recovered;
  }

  /**
   * The session's id (the server's `client.id`), from its `$session` frame; `undefined` before
   * the first one, after `close()`, and on gateways without recovery. Kept while reconnecting.
   */
  get id(): string | undefined {
    return this.recovery.id;
  }

  /**
   * How many `$gap` frames the server sent: times frames for this client may have been lost on
   * the way between its workers (each one is also a `gap` lifecycle event). Never reset.
   */
  get gaps(): number {
    return this.gapCount;
  }

  /** Frames emitted while offline, waiting to be sent on connect. */
  get bufferedCount(): number {
    return this.buffer.size;
  }

  /**
   * Start connecting (from `idle` or `closed`) and resolve once connected. Failed attempts are
   * retried with backoff, but a refusal is final, as in the Python client: `connect()` rejects
   * at once with `ConnectError` (the handshake refused with HTTP 4xx but 408 and 429, where the
   * WebSocket implementation shows the status) or a terminal `DisconnectedError` (a 1008 or
   * 4000-4999 close before the connection was ready), and the client is `closed`. Call
   * `connect()` again to retry: an `auth` function then supplies fresh credentials. It also
   * rejects with a `DisconnectedError` on `close()`, or `ReconnectFailedError` when
   * `maxReconnectAttempts` attempts failed. Ignoring the promise is safe: it never goes unhandled.
   */
  connect(): Promise<void> {
    if (this.currentState === "connected") return Promise.resolve();
    const promise = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    promise.catch(noop);
    if (this.currentState === "idle" || this.currentState === "closed") {
      this.failures = 0;
      this.closeError = undefined;
      void this.open();
    }
    return promise;
  }

  /**
   * Close for good (no reconnection): unsent frames are discarded, every pending ack and a pending
   * `connect()` reject with a terminal `DisconnectedError`. `connect()` may be called again later.
   * With code 1000 (the default) the server ends the session; the next `connect()` starts anew.
   */
  close(code = NORMAL_CLOSURE, reason = ""): void {
    if (this.currentState === "closed") return;
    const wasOpen = this.currentState === "connected";
    const socket = this.socket;
    this.socket = undefined;
    // 1000 ends the session on the server; any other code lets a later connect() resume it.
    // `$end` first: some servers (hypercorn) report every client-initiated close as 1006.
    if (code === NORMAL_CLOSURE) {
      if (socket && socket.readyState === OPEN && this.recovery.id !== undefined) {
        // Sent before a deliberate close: the server ends the session (docs/recovery.md).
        socket.send(this.codec.endFrame);
      }
      this.recovery.forget();
    }
    const error = new DisconnectedError(code, reason, true);
    this.finish(error);
    if (socket) this.detach(socket, code, reason);
    if (wasOpen) this.lifecycle.emit("disconnect", { code, reason, willReconnect: false, error });
  }

  /**
   * Send `{"event", "data"}`. Offline (idle, connecting, reconnecting) the frame waits in the send
   * buffer. Throws `BufferFullError` (`bufferOverflow: "reject-new"`) or, once `closed`, the error
   * that closed the client.
   */
  emit<E extends EventName<ClientEvents>>(
    event: E,
    ...args: DataArgs<EventData<ClientEvents, E>>
  ): void {
    this.send({ event, text: this.codec.encodeEvent(event, args[0]), ackId: undefined });
  }

  /**
   * Send `{"event", "data", "id"}` and resolve with the `data` of the server's reply. Rejects with
   * `AckError` (the server's error frame: `err.data.message`, `err.data.errors`, ...),
   * `AckTimeoutError`, a `DisconnectedError` when the connection drops after the frame was sent,
   * or `BufferFullError`. A frame still buffered when its timeout passes is never sent.
   */
  emitWithAck<E extends EventName<ClientEvents>>(
    event: E,
    ...args: AckArgs<EventData<ClientEvents, E>>
  ): Promise<EventReply<ClientEvents, E>> {
    const [data, options] = args;
    const timeout = options?.timeout ?? this.ackTimeout;
    return new Promise<unknown>((resolve, reject) => {
      const id = this.acks.open(event, timeout, resolve, reject, (expired) =>
        this.buffer.remove(expired),
      );
      try {
        this.send({ event, text: this.codec.encodeEvent(event, data, id), ackId: id });
      } catch (error) {
        this.acks.settle(id);
        reject(toError(error));
      }
    }) as Promise<EventReply<ClientEvents, E>>;
  }

  /**
   * Ask for a stream (a handler that `yield`s) and read its items in order:
   *
   * ```ts
   * for await (const token of client.stream("prompt", { text: "hi" }, { signal })) show(token);
   * ```
   *
   * The request `{"event", "data", "id"}` is sent now (offline it waits in the send buffer, like
   * `emit`). Leaving the loop early, `stream.cancel()`, the `signal` aborting or the per-item
   * `timeout` passing cancel it on the server (`$cancel`). An error frame rejects with `AckError`,
   * a connection that closes mid-stream with `DisconnectedError`. The end frame's data is
   * `await stream.result`. A `key` makes it a keyed stream (`{"event", "data", "id", "key"}`): it
   * outlives the connection, and `attachStream(key)` re-attaches to it. See `GatewayStream`.
   */
  stream<E extends EventName<ClientEvents>>(
    event: E,
    ...args: StreamArgs<EventData<ClientEvents, E>>
  ): GatewayStream<StreamItem<ClientEvents, E>> {
    const [data, options] = args;
    const key = options?.key;
    return this.openStream<StreamItem<ClientEvents, E>>(
      event,
      data,
      key === undefined ? undefined : { key },
      options ?? {},
    );
  }

  /**
   * Re-attach to the keyed stream `key` (after a page reload, a reconnection, or from another
   * client): `{"event": "$attach", "key", "after", "id"}`. The stream yields the items it kept
   * after sequence `after` (default 0: from the first one), then the live ones, and ends with
   * its end's data in `result`; each item is read once, in order. A key that names no stream
   * (unknown, or ended longer ago than the gateway keeps it) ends it at once with `missing`
   * true. The gateway's `can_attach(client, key)` decides who may: a refusal rejects with
   * `AckError`. Cancelling it (an early exit, `cancel()`, the `signal`, the `timeout`) cancels
   * the keyed stream on the server, as `stream()` does.
   */
  attachStream<T = unknown>(key: string, options: AttachOptions = {}): GatewayStream<T> {
    return this.openStream<T>(ATTACH_EVENT, undefined, { key, after: options.after ?? 0 }, options);
  }

  /** Send a stream request (or a `$attach`) carrying `fields`, and read its answer. */
  private openStream<T>(
    event: string,
    data: unknown,
    fields: { key: string; after?: number } | undefined,
    options: StreamReadOptions,
  ): GatewayStream<T> {
    const id = this.acks.newId();
    const stream = new GatewayStream<T>(event, id, this.streamHooks, {
      timeout: options.timeout,
      signal: options.signal,
      key: fields?.key,
      after: fields?.after,
      lasting: fields === undefined,
    });
    if (!stream.checkSignal()) return stream; // aborted already: nothing is sent
    this.streams.set(id, stream as GatewayStream<unknown>);
    try {
      const text = this.codec.encodeEvent(event, data, id, fields);
      this.send({ event, text, ackId: undefined, streamId: id });
    } catch (error) {
      stream.fail(toError(error));
    }
    return stream;
  }

  /**
   * Listen to server event `event`. When the server calls (a frame with `ack`), the first listener's
   * return value (awaited) is the answer; a throw answers with its message.
   */
  on<E extends EventName<ServerEvents>>(event: E, listener: ServerListener<ServerEvents, E>): this {
    this.listeners.add(event, listener as Listener, false);
    return this;
  }

  /** Like `on`, for the next occurrence only. */
  once<E extends EventName<ServerEvents>>(
    event: E,
    listener: ServerListener<ServerEvents, E>,
  ): this {
    this.listeners.add(event, listener as Listener, true);
    return this;
  }

  /** Remove one listener, every listener of `event`, or (no arguments) every server-event listener. */
  off<E extends EventName<ServerEvents>>(
    event?: E,
    listener?: ServerListener<ServerEvents, E>,
  ): this {
    this.listeners.remove(event, listener as Listener | undefined);
    return this;
  }

  /** Listen to every server event (after its own listeners); never answers a server call. */
  onAny(listener: AnyListener): this {
    this.anyListeners = [...this.anyListeners, listener];
    return this;
  }

  /** Remove a catch-all listener, or all of them. */
  offAny(listener?: AnyListener): this {
    this.anyListeners =
      listener === undefined ? [] : this.anyListeners.filter((fn) => fn !== listener);
    return this;
  }

  // -- connection -------------------------------------------------------------------------------

  private async open(): Promise<void> {
    const attempt = ++this.attemptSeq;
    this.currentState = "connecting";
    this.lifecycle.emit("connecting", { attempt: this.failures });
    let url: string;
    try {
      const auth = typeof this.auth === "function" ? await this.auth() : this.auth;
      url = handshakeUrl(this.url, auth ?? {});
    } catch (error) {
      if (attempt === this.attemptSeq) this.attemptFailed(toError(error), false);
      return;
    }
    // close() (and maybe connect() again) may have run while the auth function was pending.
    if (attempt !== this.attemptSeq) return;
    // The resume credential travels as a subprotocol, never in the URL.
    const spoken = this.codec.subprotocol;
    const offer = spoken === undefined ? this.recovery.begin() : [spoken, ...this.recovery.begin()];
    const protocols =
      offer.length === 0
        ? this.protocols
        : [...offer, ...(this.protocols ?? []).filter((name) => !offer.includes(name))];
    let socket: WebSocketLike;
    try {
      socket =
        protocols === undefined
          ? new this.WebSocketImpl(url)
          : new this.WebSocketImpl(url, [...protocols]);
    } catch (error) {
      this.attemptFailed(toError(error), false);
      return;
    }
    this.attach(socket);
  }

  private attach(socket: WebSocketLike): void {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    let lastError: Error | undefined;
    this.connectTimer = setTimeout(
      () => {
        if (this.socket !== socket) return;
        const open = socket.readyState === OPEN;
        // An open socket still waiting for its `$session`: the gateway stopped sending it.
        if (open) this.recovery.forget();
        this.detach(socket);
        this.attemptFailed(
          new GatewayClientError(
            open
              ? `No $session frame within ${this.connectTimeout} ms`
              : `Handshake timed out after ${this.connectTimeout} ms`,
          ),
          false,
        );
      },
      Math.min(this.connectTimeout, MAX_TIMER_MS),
    );
    socket.onopen = () => {
      if (this.socket !== socket) return;
      const spoken = this.codec.subprotocol;
      if (spoken !== undefined && socket.protocol !== undefined && socket.protocol !== spoken) {
        // The server does not speak it (it selected another subprotocol, or none): final.
        this.detach(socket);
        this.attemptFailed(this.unspoken(), true);
        return;
      }
      // A gateway that keeps sessions opens with `$session`: the connection is ready then.
      if (!this.recovery.awaitsSession) this.opened(socket);
    };
    socket.onmessage = (event: { data?: unknown }) => {
      if (this.socket === socket) this.receive(socket, event.data);
    };
    socket.onerror = (event: { error?: unknown; message?: unknown }) => {
      const cause = event?.error ?? event?.message;
      lastError =
        cause instanceof Error ? cause : new GatewayClientError(String(cause ?? "WebSocket error"));
    };
    socket.onclose = (event: { code?: unknown; reason?: unknown }) => {
      if (this.socket !== socket) return;
      this.detach(socket);
      const code = typeof event?.code === "number" ? event.code : ABNORMAL_CLOSURE;
      const reason = typeof event?.reason === "string" ? event.reason : "";
      if (this.currentState === "connected") this.closed(code, reason);
      else this.refusedOrFailed(code, reason, lastError);
    };
  }

  /**
   * Forget `socket` and close it: its later events do nothing (`onerror` stays set: `ws` throws
   * without one). The default code (1001) leaves the session to resume; 1000 would end it.
   */
  private detach(socket: WebSocketLike, code = GOING_AWAY, reason = ""): void {
    if (this.socket === socket) this.socket = undefined;
    clearTimeout(this.connectTimer);
    socket.onopen = noop;
    socket.onmessage = noop;
    socket.onclose = noop;
    socket.onerror = noop;
    if (socket.readyState > OPEN) return;
    try {
      socket.close(code, reason);
    } catch {
      socket.close(); // browsers accept only 1000 and 3000-4999 from scripts (no code: 1005)
    }
  }

  /** The connection is ready: its socket opened (and its awaited `$session` arrived). */
  private opened(socket: WebSocketLike, reason: RecoveryReason | null = null): void {
    clearTimeout(this.connectTimer);
    this.failures = 0;
    this.currentState = "connected";
    for (const frame of this.buffer.drain()) this.transmit(socket, frame);
    const recovered = this.recovery.recovered;
    this.lifecycle.emit("connect", reason === null ? { recovered } : { recovered, reason });
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  /** An open connection ended on its own (server close, network loss). */
  private closed(code: number, reason: string): void {
    const willReconnect = this.reconnect && !isTerminalClose(code) && this.maxReconnectAttempts > 0;
    const error = new DisconnectedError(code, reason, !willReconnect);
    // The app closed the connection (1008, 4000-4999): its session ended on the server too.
    if (isTerminalClose(code)) this.recovery.forget();
    if (willReconnect) {
      this.currentState = "reconnecting";
      this.acks.rejectSent(error);
      // The server closed them with the connection; requests still buffered go out on reconnect.
      // A session's streams go on if the next connection resumes it (the gateway has recovery).
      const resuming = this.recovery.resumable;
      for (const stream of [...this.streams.values()]) {
        if (stream.isSent && !(resuming && stream.lasting)) stream.fail(error);
      }
    } else {
      this.finish(error);
    }
    this.lifecycle.emit("disconnect", { code, reason, willReconnect, error });
    if (willReconnect) this.scheduleReconnect();
  }

  /**
   * An attempt's socket closed before the connection was ready. A refusal (HTTP 4xx but 408 and
   * 429 where the implementation shows the status; a 1008 or 4000-4999 close) is final: the
   * client closes and `connect()` rejects. Anything else is retried with backoff.
   */
  private refusedOrFailed(code: number, reason: string, lastError: Error | undefined): void {
    const unselected = /sent (no|an invalid) subprotocol/i.test(String(lastError?.message));
    if (this.codec.subprotocol !== undefined && unselected) {
      // `ws` fails a handshake that selected no subprotocol (browsers open it: see onopen).
      this.attemptFailed(this.unspoken(), true);
      return;
    }
    const status = refusedStatus(lastError);
    if (status !== undefined) {
      const terminal = isTerminalStatus(status);
      this.attemptFailed(new ConnectError(status, terminal, lastError), terminal);
      return;
    }
    const terminal = isTerminalClose(code);
    this.attemptFailed(lastError ?? new DisconnectedError(code, reason, terminal), terminal);
  }

  /** The error of a handshake whose server does not speak the client's wire protocol. */
  private unspoken(): GatewayClientError {
    return new GatewayClientError(
      `The server does not speak ${this.codec.name} (the handshake did not select ` +
        `${this.codec.subprotocol}): it needs GatewayMiddleware(..., protocols=[MessagePack()])`,
    );
  }

  /** An attempt failed before its socket opened. */
  private attemptFailed(error: Error, terminal: boolean): void {
    this.lifecycle.emit("connect_error", { attempt: this.failures, error });
    if (terminal || !this.reconnect) this.finish(error);
    else this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.failures >= this.maxReconnectAttempts) {
      const attempts = this.failures;
      this.finish(new ReconnectFailedError(attempts));
      this.lifecycle.emit("reconnect_failed", { attempts });
      return;
    }
    const delay = backoffDelay(this.failures, this.reconnectDelay, this.reconnectDelayMax);
    this.failures += 1;
    this.currentState = "reconnecting";
    this.lifecycle.emit("reconnect_attempt", { attempt: this.failures, delay });
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        if (this.currentState === "reconnecting") void this.open();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  /** Enter `closed`: stop timers, drop the socket and the buffer, reject everything waiting. */
  private finish(error: Error): void {
    this.attemptSeq += 1;
    this.currentState = "closed";
    this.closeError = error;
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    if (this.socket) this.detach(this.socket);
    this.buffer.drain();
    this.acks.rejectAll(error);
    for (const stream of [...this.streams.values()]) stream.fail(error);
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }

  // -- sending ----------------------------------------------------------------------------------

  private send(frame: OutboundFrame): void {
    if (this.currentState === "closed") {
      throw this.closeError ?? new DisconnectedError(1000, "", true);
    }
    const socket = this.socket;
    if (this.currentState === "connected" && socket && socket.readyState === OPEN) {
      this.transmit(socket, frame);
      return;
    }
    const dropped = this.buffer.push(frame);
    if (dropped?.ackId !== undefined) {
      this.acks.settle(dropped.ackId)?.reject(this.buffer.overflowError(dropped));
    }
    if (dropped?.streamId !== undefined) {
      this.streams.get(dropped.streamId)?.fail(this.buffer.overflowError(dropped));
    }
  }

  private transmit(socket: WebSocketLike, frame: OutboundFrame): void {
    socket.send(frame.text);
    if (frame.ackId !== undefined) this.acks.markSent(frame.ackId);
    if (frame.streamId !== undefined) this.streams.get(frame.streamId)?.markSent();
  }

  /**
   * A stream stopped on the client's side: a request still buffered is never sent; one that went
   * out is cancelled on the server (a connection that closed since took the stream with it).
   */
  private cancelStream(id: number, sent: boolean): void {
    if (!sent) {
      this.buffer.remove(id);
      return;
    }
    const socket = this.socket;
    if (this.currentState === "connected" && socket && socket.readyState === OPEN) {
      socket.send(this.codec.encodeEvent(CANCEL_EVENT, null, id));
    }
  }

  // -- receiving --------------------------------------------------------------------------------

  private receive(socket: WebSocketLike, raw: unknown): void {
    const frame = this.codec.decode(raw);
    if (!frame) {
      this.report(
        new GatewayClientError(
          `Ignored a server message that is not a ${this.codec.name} map with an event`,
        ),
      );
      return;
    }
    const seen = this.recovery.observe(frame);
    if (seen.kind === "malformed") {
      this.report(new GatewayClientError("Ignored a malformed $session frame"));
      return;
    }
    if (seen.kind === "session") {
      this.sessionFrame(socket, seen.session, seen.opening);
      return;
    }
    // Still `connecting` on an open socket: the `$session` it awaited never came (the gateway
    // keeps no sessions any more; the tracker forgot its session); the connection is ready.
    if (this.currentState === "connecting") {
      this.opened(socket);
      if (this.socket !== socket) return; // a `connect` listener closed the client
    }
    if (frame.event === GAP_EVENT) {
      // Taken, never dispatched: `on("$gap")` and `onAny` listeners never see it.
      this.gapCount += 1;
      this.lifecycle.emit("gap", { reason: gapReason(frame.data) });
      return;
    }
    if (frame.ack !== undefined) {
      this.answer(socket, frame, frame.ack);
      return;
    }
    if (frame.id !== undefined) {
      const stream = typeof frame.id === "number" ? this.streams.get(frame.id) : undefined;
      if (stream) {
        stream.feed(frame);
        return;
      }
      // A reply to emitWithAck; one whose caller stopped waiting (timeout) is dropped.
      const entry = typeof frame.id === "number" ? this.acks.settle(frame.id) : undefined;
      if (!entry) return;
      if (frame.event === ERROR_EVENT)
        entry.reject(new AckError(entry.event, errorData(frame.data)));
      else entry.resolve(frame.data);
      return;
    }
    if (frame.event === this.heartbeatEvent && socket.readyState === OPEN) {
      socket.send(this.codec.encodeEvent(frame.event, null));
    }
    this.dispatch(this.listeners.take(frame.event), frame);
  }

  /**
   * A `$session` frame: the `session` event, then `connect` when the connection awaited it, or
   * `recovery_failed` when it says that an open connection lost frames.
   */
  private sessionFrame(socket: WebSocketLike, session: SessionEvent, opening: boolean): void {
    if (!session.recovered) {
      // Streams kept across a drop belonged to a session that is gone.
      const error = new DisconnectedError(1006, "session not recovered", false);
      for (const stream of [...this.streams.values()]) {
        if (stream.isSent && stream.lasting) stream.fail(error);
      }
    }
    this.lifecycle.emit("session", session);
    if (this.socket !== socket) return; // a listener closed the client
    if (this.currentState === "connecting") this.opened(socket, session.reason);
    else if (!opening && !session.recovered) {
      this.lifecycle.emit("recovery_failed", { id: session.id, reason: session.reason });
    }
  }

  private dispatch(listeners: Listener[], frame: InboundFrame): void {
    const report = (error: unknown): void => this.report(error);
    for (const listener of listeners) callSafely(listener, [frame.data], report);
    for (const listener of this.anyListeners)
      callSafely(listener, [frame.event, frame.data], report);
  }

  /** A server call: the first listener's (awaited) result answers it, on the socket it came on. */
  private answer(socket: WebSocketLike, frame: InboundFrame, ack: number): void {
    const [first, ...rest] = this.listeners.take(frame.event);
    const answered = answerCall(first, frame, ack, this.codec);
    this.dispatch(rest, frame);
    void answered.then((reply) => {
      // The ack number belongs to that connection: after a reconnect the answer has nowhere to go.
      if (this.socket === socket && socket.readyState === OPEN) socket.send(reply);
    });
  }

  private report(error: unknown): void {
    this.lifecycle.emit("error", { error: toError(error) });
  }
}
