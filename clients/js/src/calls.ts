/** Server -> client calls: run the listener, encode its outcome as the `$ack` answer. */
import { type Codec, type Encoded, codecFor } from "./codec.js";
import type { InboundFrame } from "./frames.js";
import type { Listener } from "./listeners.js";

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function encodeResult(codec: Codec, ack: number, result: unknown): Encoded {
  try {
    return codec.encodeAckResult(ack, result);
  } catch (error) {
    const format = codec.name === "json" ? "JSON" : "MessagePack";
    return codec.encodeAckError(ack, `Answer is not ${format}-serialisable: ${messageOf(error)}`);
  }
}

/**
 * Call `listener` with the frame's data now (synchronously) and resolve with the encoded answer:
 * its (awaited) result, its error's message, or "No handler" when there is none. Never rejects.
 */
export function answerCall(
  listener: Listener | undefined,
  frame: InboundFrame,
  ack: number,
  codec: Codec = codecFor("json"),
): Promise<Encoded> {
  if (listener === undefined) {
    return Promise.resolve(
      codec.encodeAckError(ack, `No handler for server event '${frame.event}'`),
    );
  }
  let result: unknown;
  try {
    result = (listener as (data: unknown) => unknown)(frame.data);
  } catch (error) {
    return Promise.resolve(codec.encodeAckError(ack, messageOf(error)));
  }
  return Promise.resolve(result).then(
    (value) => encodeResult(codec, ack, value),
    (error: unknown) => codec.encodeAckError(ack, messageOf(error)),
  );
}
