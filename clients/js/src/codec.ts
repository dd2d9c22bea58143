/**
 * The wire protocols the client speaks: JSON (text frames, the default) or MessagePack (binary
 * frames: the same maps, with `Uint8Array` data as MessagePack `bin` both ways). A MessagePack
 * client offers the `gatewayasgi.msgpack` subprotocol; the server selects it when it registers
 * `MessagePack()` (`GatewayMiddleware(..., protocols=[MessagePack()])`).
 */
import { decode, encode } from "@msgpack/msgpack";

import {
  ACK_EVENT,
  type FrameFields,
  type FrameId,
  type InboundFrame,
  decodeFrame,
  encodeAckError,
  encodeAckResult,
  encodeEvent,
  frameMap,
  frameOf,
} from "./frames.js";

/** The `wireProtocol` option: how frames look on the wire. */
export type WireProtocolName = "json" | "msgpack";

/** One encoded frame: a `string` goes out as a text frame, a `Uint8Array` as a binary one. */
export type Encoded = string | Uint8Array;

export interface Codec {
  readonly name: WireProtocolName;
  /** Offered first in every handshake, and required in the server's answer. */
  readonly subprotocol: string | undefined;
  /** Sent before a deliberate close: the server ends the session. */
  readonly endFrame: Encoded;
  decode(raw: unknown): InboundFrame | undefined;
  /** `{"event", "data", "id"?}` and `fields` (a stream's `key`; a `$attach`'s `key`, `after`). */
  encodeEvent(event: string, data: unknown, id?: FrameId, fields?: FrameFields): Encoded;
  encodeAckResult(ack: number, result: unknown): Encoded;
  encodeAckError(ack: number, message: string): Encoded;
}

export const MSGPACK_SUBPROTOCOL = "gatewayasgi.msgpack";

const json: Codec = {
  name: "json",
  subprotocol: undefined,
  endFrame: '{"event":"$end"}',
  decode: decodeFrame,
  encodeEvent,
  encodeAckResult,
  encodeAckError,
};

function bytesOf(raw: unknown): Uint8Array | undefined {
  if (raw instanceof Uint8Array) return raw;
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  if (ArrayBuffer.isView(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  return undefined;
}

function pack(frame: Record<string, unknown>): Uint8Array {
  return encode(frame);
}

const msgpack: Codec = {
  name: "msgpack",
  subprotocol: MSGPACK_SUBPROTOCOL,
  endFrame: pack({ event: "$end" }),
  decode(raw: unknown): InboundFrame | undefined {
    const bytes = bytesOf(raw);
    if (bytes === undefined) return undefined;
    try {
      return frameOf(decode(bytes));
    } catch {
      return undefined;
    }
  },
  encodeEvent(event: string, data: unknown, id?: FrameId, fields?: FrameFields): Uint8Array {
    return pack(frameMap(event, data, id, fields));
  },
  encodeAckResult(ack: number, result: unknown): Uint8Array {
    return pack({ event: ACK_EVENT, id: ack, data: result === undefined ? null : result });
  },
  encodeAckError(ack: number, message: string): Uint8Array {
    return pack({ event: ACK_EVENT, id: ack, error: { message } });
  },
};

/** The codec of the `wireProtocol` option. */
export function codecFor(name: WireProtocolName | undefined): Codec {
  if (name === undefined || name === "json") return json;
  if (name === "msgpack") return msgpack;
  throw new TypeError(`wireProtocol must be "json" or "msgpack", got ${String(name)}`);
}
