/**
 * Streams the client reads: a request whose handler yields (`GatewayClient.stream`).
 *
 * The server answers a stream request `{"event", "data", "id"}` with items
 * `{"event", "data", "id", "seq"}` (seq from 1), then one end `{"event", "data", "id", "end": true}`
 * (`"cancelled": true` after a cancel), or an error frame carrying the request's `id`.
 * `{"event": "$cancel", "id": N}` cancels it: the server closes the generator.
 *
 * A request that also names a `key` starts a keyed stream, which outlives its connection;
 * `{"event": "$attach", "key", "after", "id"}` re-attaches to it: the kept items after sequence
 * `after` (with their original `seq`), the live ones, then the end, all carrying the attach
 * request's `id` (`$cancel` with that id cancels the stream). An unknown key is answered
 * `{"event": "$attach", "data": null, "id", "end": true, "missing": true}`; a refusal (the
 * gateway's `can_attach`) is an error frame with the `id`.
 */
import { AckError, StreamTimeoutError } from "./errors.js";
import { ERROR_EVENT, type InboundFrame, errorData } from "./frames.js";
import type { AbortSignalLike } from "./types.js";

const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the client does for a stream: cancel it on the server (or unbuffer its request), forget it. */
export interface StreamHooks {
  /** The stream stopped on the client's side while the server may still run it. */
  cancel(id: number, sent: boolean): void;
  /** The stream needs no more frames: drop it from the client's table. */
  forget(id: number): void;
}

interface Waiter<T> {
  readonly resolve: (result: IteratorResult<T, undefined>) => void;
  readonly reject: (error: unknown) => void;
}

type Ending = { readonly error: unknown } | { readonly value: unknown };

interface Item<T> {
  readonly value: T;
  readonly seq: number;
}

const noop = (): void => undefined;

function abortReason(signal: AbortSignalLike): unknown {
  if (signal.reason !== undefined) return signal.reason;
  const error = new Error("The stream was aborted");
  error.name = "AbortError";
  return error;
}

/**
 * The items of one stream, in order: `for await (const item of client.stream(...))`.
 *
 * Leaving the loop early (`break`, `return`, a throw in its body), `cancel()`, the `signal`
 * aborting or the per-item `timeout` passing cancel the stream on the server (`$cancel`: the
 * generator is closed at its current `await`). `result` settles as the stream ends: with the
 * end frame's data (a `StreamEnd` value on the server, else `null`; `undefined` when the client
 * stopped first), or it rejects with what the loop threw: `AckError` (the server's error frame),
 * `DisconnectedError` (the connection closed mid-stream), `StreamTimeoutError`, the signal's
 * `reason`, or `BufferFullError`. Ignoring `result` is safe: it never goes unhandled.
 *
 * One reader: the stream is its own iterator, so a second loop goes on where the first stopped.
 *
 * A keyed stream (`client.stream(event, data, { key })`) runs on when its connection closes:
 * the loop rejects with `DisconnectedError`, and `client.attachStream(key, { after: position })`
 * (on this client once reconnected, or another) reads the rest. `client.attachStream` returns
 * a `GatewayStream` too (its `event` is `"$attach"`), with `missing` true when no stream had
 * that key.
 */
export class GatewayStream<T = unknown> implements AsyncIterableIterator<T> {
  /** The event the stream was requested with. */
  readonly event: string;
  /** The request's id (shared with `emitWithAck`'s counter); every frame of the stream carries it. */
  readonly id: number;
  /** The keyed stream's key (`stream(..., { key })`, `attachStream(key)`); else `undefined`. */
  readonly key: string | undefined;
  /**
   * An unkeyed stream of a client that resumes sessions (`recover`, the default): on a gateway
   * with recovery it belongs to the session, so it goes on across a reconnection that resumes
   * the session (its missed items are replayed) and fails only when the session is not recovered.
   */
  readonly lasting: boolean;
  /** The end frame's data, or the error the stream ended with (see the class comment). */
  readonly result: Promise<unknown>;

  private readonly hooks: StreamHooks;
  private readonly timeout: number;
  private readonly signal: AbortSignalLike | undefined;
  private readonly items: Item<T>[] = [];
  private readonly waiters: Waiter<T>[] = [];
  /** How the stream ended, once the server (or the connection) ended it; read after `items`. */
  private ending: Ending | undefined;
  /** True once the reader is done: nothing more is read, the stream is forgotten. */
  private closed = false;
  /** Why the client stopped the stream, for the next read when no read was waiting. */
  private stopError: { readonly error: unknown } | undefined;
  private sent = false;
  private wasCancelled = false;
  private wasMissing = false;
  /** The seq of the last item the reader took, and of the last item that arrived. */
  private readSeq: number;
  private fedSeq: number;
  private timer: unknown;
  private settleResult!: (ending: Ending) => void;
  private readonly onAbort = (): void => {
    if (this.signal !== undefined) this.stop({ error: abortReason(this.signal) });
  };

  /** Made by `GatewayClient.stream`. */
  constructor(
    event: string,
    id: number,
    hooks: StreamHooks,
    options: {
      timeout?: number | undefined;
      signal?: AbortSignalLike | undefined;
      key?: string | undefined;
      after?: number | undefined;
      lasting?: boolean | undefined;
    } = {},
  ) {
    this.event = event;
    this.id = id;
    this.key = options.key;
    this.lasting = options.lasting ?? false;
    this.readSeq = this.fedSeq = options.after ?? 0;
    this.hooks = hooks;
    this.timeout = options.timeout ?? Infinity;
    this.signal = options.signal;
    const result = new Promise<unknown>((resolve, reject) => {
      this.settleResult = (ending) =>
        "error" in ending ? reject(ending.error) : resolve(ending.value);
    });
    result.catch(noop);
    this.result = result;
    this.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /**
   * True when the client cancelled the stream (`cancel()`, an abort, an early exit, a timeout)
   * before its end, or the server's end frame says it was cancelled.
   */
  get cancelled(): boolean {
    return this.wasCancelled;
  }

  /**
   * True when the stream ended because `attachStream` found no stream with its key (unknown,
   * or past the gateway's grace period after its end): the loop read nothing, `result` is `null`.
   */
  get missing(): boolean {
    return this.wasMissing;
  }

  /**
   * The sequence number (`seq`, from 1) of the last item the reader took; before the first one,
   * 0 (or an attach's `after`). Re-attaching to a keyed stream with `{ after: position }` goes on
   * right after it.
   */
  get position(): number {
    return this.readSeq;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next item; `done` after the end frame. Rejects with what ended the stream otherwise. */
  next(): Promise<IteratorResult<T, undefined>> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve({ done: false, value: this.take(item) });
    if (this.closed) {
      const stopped = this.stopError;
      this.stopError = undefined; // reported once; later reads are done
      if (stopped !== undefined) return Promise.reject(stopped.error);
      return Promise.resolve({ done: true, value: undefined });
    }
    if (this.ending !== undefined) return this.readEnding();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.arm();
    });
  }

  /** Stop reading (a loop's `break` calls it): the server closes the generator if it still runs. */
  return(): Promise<IteratorResult<T, undefined>> {
    this.cancel();
    return Promise.resolve({ done: true, value: undefined });
  }

  /** Cancel the stream: it ends now, `result` resolves with `undefined`; nothing if it ended. */
  cancel(): void {
    this.stop({ value: undefined });
  }

  // -- the client's side ----------------------------------------------------------------------

  /** @internal Whether the request went out on a socket. */
  get isSent(): boolean {
    return this.sent;
  }

  /** @internal The request went out on a socket: the server runs the stream. */
  markSent(): void {
    this.sent = true;
  }

  /** @internal A frame with this stream's id: an item, the end, or an error frame. */
  feed(frame: InboundFrame): void {
    if (this.closed || this.ending !== undefined) return;
    if (frame.event === ERROR_EVENT && frame.seq === undefined && frame.end !== true) {
      this.end({ error: new AckError(this.event, errorData(frame.data)) });
    } else if (frame.end === true) {
      if (frame.cancelled === true) this.wasCancelled = true;
      if (frame.missing === true) this.wasMissing = true;
      this.end({ value: frame.data });
    } else {
      this.disarm();
      this.fedSeq = frame.seq ?? this.fedSeq + 1;
      const item = { value: frame.data as T, seq: this.fedSeq };
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve({ done: false, value: this.take(item) });
      else this.items.push(item);
    }
  }

  /** The reader takes `item`: its seq is the stream's position. */
  private take(item: Item<T>): T {
    this.readSeq = item.seq;
    return item.value;
  }

  /** @internal The connection the stream ran on closed (or its request never went out). */
  fail(error: Error): void {
    if (this.closed || this.ending !== undefined) return;
    this.end({ error });
  }

  /** The server (or the connection) ended the stream: the items already here are read first. */
  private end(ending: Ending): void {
    this.ending = ending;
    this.disarm();
    this.release();
    this.settleResult(ending);
    if (this.waiters.length > 0) {
      const waiters = this.waiters.splice(0);
      for (const waiter of waiters) {
        this.readEnding().then(waiter.resolve, waiter.reject);
      }
    }
  }

  private readEnding(): Promise<IteratorResult<T, undefined>> {
    const ending = this.ending;
    this.closed = true;
    if (ending !== undefined && "error" in ending) {
      this.ending = { value: undefined }; // reported once; later reads are done
      return Promise.reject(ending.error);
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  /** The client stops the stream now: queued items are dropped, the server is told. */
  private stop(ending: Ending): void {
    if (this.closed) return;
    this.closed = true;
    this.items.length = 0;
    const running = this.ending === undefined;
    if (running) {
      this.wasCancelled = true;
      this.disarm();
      this.release();
      this.settleResult(ending);
      this.hooks.cancel(this.id, this.sent);
    }
    const waiters = this.waiters.splice(0);
    if ("error" in ending && running && waiters.length === 0) this.stopError = ending;
    for (const waiter of waiters) {
      if ("error" in ending) waiter.reject(ending.error);
      else waiter.resolve({ done: true, value: undefined });
    }
  }

  /** Forget the stream on the client (no more frames) and stop listening to the signal. */
  private release(): void {
    this.signal?.removeEventListener("abort", this.onAbort);
    this.hooks.forget(this.id);
  }

  /** The reader waits for an item: start the per-item timeout. */
  private arm(): void {
    if (!Number.isFinite(this.timeout) || this.timer !== undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.stop({ error: new StreamTimeoutError(this.event, this.timeout) });
      },
      Math.min(Math.max(this.timeout, 0), MAX_TIMER_MS),
    );
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** @internal Called right after construction: a signal aborted already stops it at once. */
  checkSignal(): boolean {
    if (this.signal?.aborted !== true) return true;
    this.stop({ error: abortReason(this.signal) });
    return false;
  }
}
