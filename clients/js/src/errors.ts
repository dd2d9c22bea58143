/** Errors the client raises or rejects with. Every one extends `GatewayClientError`. */

/** The data of a server error frame: `{"message": ..., ...details}` (pydantic's `errors`, `WsException` extras). */
export interface ErrorFrameData {
  message: string;
  [detail: string]: unknown;
}

/** Base class: `err instanceof GatewayClientError` catches everything this package throws. */
export class GatewayClientError extends Error {
  override name = "GatewayClientError";
}

/** The server answered an `emitWithAck` with an error frame; `data` holds its message and details. */
export class AckError extends GatewayClientError {
  override name = "AckError";
  /** The event the failed call was sent with. */
  readonly event: string;
  /** The error frame's `data`: `message` plus any details, e.g. `data.errors` for a validation failure. */
  readonly data: ErrorFrameData;

  constructor(event: string, data: ErrorFrameData) {
    super(data.message);
    this.event = event;
    this.data = data;
  }
}

/** No reply to an `emitWithAck` arrived within its timeout (the frame may or may not have been handled). */
export class AckTimeoutError extends GatewayClientError {
  override name = "AckTimeoutError";
  readonly event: string;
  readonly timeout: number;

  constructor(event: string, timeout: number) {
    super(`No reply to '${event}' within ${timeout} ms`);
    this.event = event;
    this.timeout = timeout;
  }
}

/**
 * No item (nor the end) of a `stream` within its `timeout`: the stream was cancelled on the
 * server (the generator closed) and the loop rejects with this.
 */
export class StreamTimeoutError extends GatewayClientError {
  override name = "StreamTimeoutError";
  readonly event: string;
  readonly timeout: number;

  constructor(event: string, timeout: number) {
    super(`No item of stream '${event}' within ${timeout} ms`);
    this.event = event;
    this.timeout = timeout;
  }
}

/**
 * The connection closed: rejects the acks still waiting for a reply, a pending `connect()` when the
 * close is terminal, and is passed with every `disconnect` lifecycle event.
 */
export class DisconnectedError extends GatewayClientError {
  override name = "DisconnectedError";
  /** The WebSocket close code (1006 when the connection dropped without a close frame). */
  readonly code: number;
  /** The close reason the peer gave, often empty. */
  readonly reason: string;
  /** True when the client will not reconnect on its own (1008, 4000-4999, `close()`, attempts used up). */
  readonly terminal: boolean;

  constructor(code: number, reason: string, terminal: boolean) {
    super(`Connection closed (code ${code}${reason ? `: ${reason}` : ""})`);
    this.code = code;
    this.reason = reason;
    this.terminal = terminal;
  }
}

/**
 * The gateway refused the opening handshake with an HTTP status (403 from a handshake guard or
 * an origin check, 503 at capacity). Only WebSocket implementations that expose the status
 * produce it (`ws` on Node); browsers and Node 22's built-in `WebSocket` hide it, and a refusal
 * there looks like a lost connection (1006). `terminal` follows the Python client's rule: a 4xx
 * other than 408 and 429 is final (`connect()` rejects, no automatic retry), anything else is
 * retried with backoff.
 */
export class ConnectError extends GatewayClientError {
  override name = "ConnectError";
  /** The HTTP status of the refusal. */
  readonly status: number;
  /** True when the client does not retry on its own: call `connect()` again. */
  readonly terminal: boolean;

  constructor(status: number, terminal: boolean, cause?: Error) {
    super(`Handshake refused with HTTP ${status}`, cause === undefined ? undefined : { cause });
    this.status = status;
    this.terminal = terminal;
  }
}

/** A frame emitted while offline did not fit in the send buffer (`maxBufferedMessages`). */
export class BufferFullError extends GatewayClientError {
  override name = "BufferFullError";
  readonly event: string;

  constructor(event: string, capacity: number) {
    super(`Send buffer full (${capacity} frames): '${event}' was dropped`);
    this.event = event;
  }
}

/** `maxReconnectAttempts` reconnection attempts in a row failed; the client stopped trying. */
export class ReconnectFailedError extends GatewayClientError {
  override name = "ReconnectFailedError";
  readonly attempts: number;

  constructor(attempts: number) {
    super(`Gave up after ${attempts} reconnection attempt${attempts === 1 ? "" : "s"}`);
    this.attempts = attempts;
  }
}
