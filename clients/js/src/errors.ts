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
