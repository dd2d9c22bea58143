/**
 * The gatewayasgi JSON wire protocol, client side. Pure functions, no I/O.
 *
 * Client -> server: `{"event", "data", "id"?}`; the server echoes `id` on the reply (an automatic
 * response or an error frame `{"event": "error", "data": {"message", ...}}`): that is the ack.
 * Server -> client calls: `{"event", "data", "ack": N}`, answered with
 * `{"event": "$ack", "id": N, "data": result}` or `{"event": "$ack", "id": N, "error": {"message"}}`.
 */

/** An ack id the client puts on a frame; the server echoes it on the reply. */
export type FrameId = string | number;

/** One decoded server frame. */
export interface InboundFrame {
  readonly event: string;
  readonly data: unknown;
  /** Present on a reply to a client frame that carried an id. */
  readonly id?: FrameId;
  /** Present when the server calls the client and waits for a `$ack` answer. */
  readonly ack?: number;
  /** The frame's position in the session's history (recoverable frames only); opaque. */
  readonly offset?: string;
  /** On a stream's item: its number, from 1. */
  readonly seq?: number;
  /** True on a stream's end frame. */
  readonly end?: boolean;
  /** True on the end frame of a stream the client cancelled. */
  readonly cancelled?: boolean;
  /** True on the end answering a `$attach` whose key names no stream. */
  readonly missing?: boolean;
}

export const ERROR_EVENT = "error";
export const ACK_EVENT = "$ack";
/** Cancels the stream answering the request with this `id`. */
export const CANCEL_EVENT = "$cancel";
/** Re-attaches to a keyed stream: `{"event": "$attach", "key", "after", "id"}`. */
export const ATTACH_EVENT = "$attach";
/**
 * The server's word that frames for this client may have been lost on the way between its
 * workers: `{"event": "$gap", "data": {"reason": "backplane"}}` (gateways without recovery).
 */
export const GAP_EVENT = "$gap";

const decoder = new TextDecoder();

function text(raw: unknown): string | undefined {
  if (typeof raw === "string") return raw;
  if (raw instanceof ArrayBuffer || ArrayBuffer.isView(raw)) return decoder.decode(raw);
  return undefined;
}

/** Parse a text or binary message; `undefined` for anything that is not a `{"event": str}` object. */
export function decodeFrame(raw: unknown): InboundFrame | undefined {
  const source = text(raw);
  if (source === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch {
    return undefined;
  }
  return frameOf(value);
}

/** A parsed message as a frame; `undefined` for anything but a `{"event": str}` map. */
export function frameOf(value: unknown): InboundFrame | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const frame = value as Record<string, unknown>;
  if (typeof frame.event !== "string" || frame.event === "") return undefined;
  const decoded: {
    event: string;
    data: unknown;
    id?: FrameId;
    ack?: number;
    offset?: string;
    seq?: number;
    end?: boolean;
    cancelled?: boolean;
    missing?: boolean;
  } = { event: frame.event, data: frame.data ?? null };
  if (typeof frame.id === "string" || typeof frame.id === "number") decoded.id = frame.id;
  if (Number.isInteger(frame.ack)) decoded.ack = frame.ack as number;
  if (typeof frame.offset === "string") decoded.offset = frame.offset;
  if (Number.isInteger(frame.seq)) decoded.seq = frame.seq as number;
  if (frame.end === true) decoded.end = true;
  if (frame.cancelled === true) decoded.cancelled = true;
  if (frame.missing === true) decoded.missing = true;
  return decoded;
}

/** Extra members of a client frame (a stream request's `key`, a `$attach`'s `key` and `after`). */
export type FrameFields = Readonly<Record<string, unknown>>;

/**
 * `{"event", "data"}` plus `"id"` when given, then `fields`. `undefined` data is sent as `null`.
 */
export function frameMap(
  event: string,
  data: unknown,
  id?: FrameId,
  fields?: FrameFields,
): Record<string, unknown> {
  const payload = data === undefined ? null : data;
  const frame: Record<string, unknown> =
    id === undefined ? { event, data: payload } : { event, data: payload, id };
  return fields === undefined ? frame : { ...frame, ...fields };
}

/** `{"event", "data"}`, `"id"` when given, and `fields`; `undefined` data is sent as `null`. */
export function encodeEvent(
  event: string,
  data: unknown,
  id?: FrameId,
  fields?: FrameFields,
): string {
  return JSON.stringify(frameMap(event, data, id, fields));
}

/** The answer to a server call that succeeded. */
export function encodeAckResult(ack: number, result: unknown): string {
  return JSON.stringify({ event: ACK_EVENT, id: ack, data: result === undefined ? null : result });
}

/** The answer to a server call whose handler threw or does not exist. Only the message leaves. */
export function encodeAckError(ack: number, message: string): string {
  return JSON.stringify({ event: ACK_EVENT, id: ack, error: { message } });
}

/** The reason in a `$gap` frame's data: `"unknown"` when it names no string one. */
export function gapReason(data: unknown): string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return "unknown";
  const reason = (data as Record<string, unknown>).reason;
  return typeof reason === "string" ? reason : "unknown";
}

/** Normalise a server error frame's data so `message` is always a string. */
export function errorData(data: unknown): { message: string; [detail: string]: unknown } {
  if (typeof data === "object" && data !== null && !Array.isArray(data)) {
    const record = data as Record<string, unknown>;
    const message = typeof record.message === "string" ? record.message : "Server error";
    return { ...record, message };
  }
  return { message: typeof data === "string" ? data : "Server error" };
}
