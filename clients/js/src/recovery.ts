/**
 * SEAM: session recovery. Not implemented: the recovery wire protocol is still being designed on
 * the server side, and this file must not guess it.
 *
 * The client consults a `SessionRecovery` at exactly four points, so that recovery can plug in as
 * one new implementation of this interface with no edits spread over `client.ts`:
 *   1. `handshakeParams()` before every connection attempt (what identifies the session to resume);
 *   2. `observe(frame)` for every server frame, before dispatch (positions, recovery control frames);
 *   3. `recovered` when the socket opens (reported in the `connect` event and `client.recovered`);
 *   4. `disconnected(terminal)` when a connection ends (keep state for the next attempt, or drop it).
 * Today `NO_RECOVERY` is used: nothing extra is sent, no frame is consumed, `recovered` is false.
 *
 * @internal
 */
import type { InboundFrame } from "./frames.js";
import type { QueryParams } from "./types.js";

/** @internal */
export interface SessionRecovery {
  /** Query parameters added to the next handshake URL (after `auth`). */
  handshakeParams(): QueryParams;
  /** Sees each server frame first; `true` when it consumed the frame (a recovery control frame). */
  observe(frame: InboundFrame): boolean;
  /** Whether the connection that just opened resumed the previous session. */
  readonly recovered: boolean;
  /** The connection ended; `terminal` when the client will not reconnect. */
  disconnected(terminal: boolean): void;
}

/** @internal The only implementation until the recovery protocol exists. */
export const NO_RECOVERY: SessionRecovery = Object.freeze({
  handshakeParams: () => ({}),
  observe: () => false,
  recovered: false,
  disconnected: () => undefined,
});
