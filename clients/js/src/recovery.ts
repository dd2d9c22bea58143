/**
 * Session recovery, client side: bookkeeping only, no I/O (the wire protocol is the server's
 * docs/recovery.md).
 *
 * A gateway with recovery opens every connection with a `$session` frame (id, token, epoch,
 * offset, recovered, reason) and puts an `offset` on every frame a session can recover. The
 * client keeps the latest session and its position (the offset of the last frame it received),
 * and resumes by offering two WebSocket subprotocols in its next handshake:
 * `gatewayasgi` and `gatewayasgi.resume.<id>.<token>.<epoch>.<position>`, so the credential never
 * appears in a URL. A gateway without recovery never sends `$session`, so nothing is offered.
 *
 * A history split into partitions (`Recovery(partitions=N)`) gives offsets as `<p>~<offset>`
 * and positions as such offsets joined by `_`: the client keeps the last offset of each `<p>~`
 * prefix (`""` for a plain offset, which is then the whole position), replaces them all with
 * each `$session`'s, and offers them joined by `_`, sorted by prefix.
 *
 * `client.ts` consults a `SessionRecovery` at these points only:
 *   1. `begin()` when a connection attempt starts: the subprotocols to offer;
 *   2. `awaitsSession` when the socket opens: wait for the `$session` frame before `connect`;
 *   3. `observe(frame)` for every server frame, before dispatch;
 *   4. `recovered` and `id`, read at will;
 *   5. `forget()` when the session ended (the client closed with 1000, or the app closed it).
 *
 * @internal
 */
import type { InboundFrame } from "./frames.js";
import type { RecoveryReason, SessionEvent } from "./types.js";

export const SESSION_EVENT = "$session";
export const SUBPROTOCOL = "gatewayasgi";
export const RESUME_PREFIX = `${SUBPROTOCOL}.resume.`;

/** Each part of the credential must be an HTTP token, or the handshake itself would fail. */
const PART = /^[A-Za-z0-9_~-]+$/;
/** A partitioned history (`Recovery(partitions=N)`): at most this many offsets kept. */
const MAX_POSITIONS = 32;

/** The partition of an offset: the `<p>` of `<p>~<offset>`, `""` for a plain offset. */
function partitionOf(offset: string): string {
  const at = offset.indexOf("~");
  return at < 0 ? "" : offset.slice(0, at);
}

/** What one server frame was, for the client. */
export type Observation =
  /** An app frame: dispatch it. */
  | { readonly kind: "frame" }
  /** A `$session` frame, taken (never dispatched); `opening` when it is its connection's first. */
  | { readonly kind: "session"; readonly session: SessionEvent; readonly opening: boolean }
  /** A `$session` frame that could not be read: dropped, nothing changed. */
  | { readonly kind: "malformed" };

const APP_FRAME: Observation = Object.freeze({ kind: "frame" });
const MALFORMED: Observation = Object.freeze({ kind: "malformed" });

/** @internal */
export interface SessionRecovery {
  /** A connection attempt starts: the subprotocols to offer before the user's own (none: `[]`). */
  begin(): string[];
  /** Whether the connection that just opened is ready only once its `$session` frame arrived. */
  readonly awaitsSession: boolean;
  /** Sees each server frame first: records its `offset`, takes `$session` frames. */
  observe(frame: InboundFrame): Observation;
  /** Whether the current connection resumed the session it asked for. */
  readonly recovered: boolean;
  /** The id of the session the client holds (the server's `client.id`), if any. */
  readonly id: string | undefined;
  /** Whether the next connection will offer to resume a session the client holds. */
  readonly resumable: boolean;
  /** The session ended: the next connection starts a new one. */
  forget(): void;
}

interface Held {
  readonly id: string;
  readonly token: string;
  readonly epoch: string;
}

/** The session in a `$session` frame's data, `undefined` when it is malformed. */
export function parseSession(
  data: unknown,
): (Held & { offset: string; recovered: boolean; reason: RecoveryReason | null }) | undefined {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return undefined;
  const { id, token, epoch, offset, recovered, reason } = data as Record<string, unknown>;
  if (
    typeof id !== "string" ||
    typeof token !== "string" ||
    typeof epoch !== "string" ||
    typeof offset !== "string" ||
    !(reason === null || reason === undefined || typeof reason === "string")
  ) {
    return undefined;
  }
  return { id, token, epoch, offset, recovered: recovered === true, reason: reason ?? null };
}

/**
 * The client's session: what it needs to resume on the next connection.
 *
 * `offer` (the `recover` option) decides whether the credential is offered; `$session` frames
 * are read (and never dispatched) either way, so `client.id` is known with or without it.
 */
export class SessionTracker implements SessionRecovery {
  private held: Held | undefined;
  /**
   * Per partition of the history, the offset of the last frame received: what a resume
   * continues from. One history is one partition (`""`); a partitioned one gives offsets as
   * `<p>~<offset>` and positions as those joined by `_`.
   */
  private positions = new Map<string, string>();
  /** No frame yet on the current connection: its first `$session` is the opening one. */
  private fresh = true;
  private resumed = false;

  constructor(private readonly offer: boolean) {}

  get id(): string | undefined {
    return this.held?.id;
  }

  get recovered(): boolean {
    return this.resumed;
  }

  get resumable(): boolean {
    return this.offer && this.held !== undefined;
  }

  /** A gateway that sent `$session` before sends it first on every connection. */
  get awaitsSession(): boolean {
    return this.held !== undefined;
  }

  /** `gatewayasgi.resume.<id>.<token>.<epoch>.<position>`, `undefined` without a session. */
  credential(): string | undefined {
    const held = this.held;
    if (held === undefined || this.positions.size === 0) return undefined;
    const position = [...this.positions.keys()]
      .sort()
      .map((key) => this.positions.get(key) as string)
      .join("_");
    const parts = [held.id, held.token, held.epoch, position];
    return parts.every((part) => PART.test(part)) ? RESUME_PREFIX + parts.join(".") : undefined;
  }

  begin(): string[] {
    this.fresh = true;
    this.resumed = false;
    const credential = this.offer ? this.credential() : undefined;
    return credential === undefined ? [] : [SUBPROTOCOL, credential];
  }

  observe(frame: InboundFrame): Observation {
    const opening = this.fresh;
    this.fresh = false;
    if (frame.event !== SESSION_EVENT) {
      // A connection expected to open with `$session` did not: the gateway keeps no sessions
      // any more (redeployed without recovery). Stop offering and waiting.
      if (opening && this.held !== undefined) this.forget();
      if (frame.offset !== undefined) this.note(frame.offset);
      return APP_FRAME;
    }
    const parsed = parseSession(frame.data);
    if (parsed === undefined) {
      this.fresh = opening;
      return MALFORMED;
    }
    this.held = { id: parsed.id, token: parsed.token, epoch: parsed.epoch };
    this.positions = new Map(
      parsed.offset
        .split("_")
        .slice(0, MAX_POSITIONS)
        .map((item) => [partitionOf(item), item]),
    );
    this.resumed = parsed.recovered;
    return {
      kind: "session",
      session: { id: parsed.id, recovered: parsed.recovered, reason: parsed.reason },
      opening,
    };
  }

  /** A frame's offset: the last of its partition (a new partition only below the cap). */
  private note(offset: string): void {
    const key = partitionOf(offset);
    if (this.positions.has(key) || this.positions.size < MAX_POSITIONS) {
      this.positions.set(key, offset);
    }
  }

  forget(): void {
    this.held = undefined;
    this.positions = new Map();
    this.resumed = false;
  }
}
