/** Server -> client calls: run the listener, encode its outcome as the `$ack` answer. */
import { type InboundFrame, encodeAckError, encodeAckResult } from "./frames.js";
import type { Listener } from "./listeners.js";

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function encodeResult(ack: number, result: unknown): string {
  try {
    return encodeAckResult(ack, result);
  } catch (error) {
    return encodeAckError(ack, `Answer is not JSON-serialisable: ${messageOf(error)}`);
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
): Promise<string> {
  if (listener === undefined) {
    return Promise.resolve(encodeAckError(ack, `No handler for server event '${frame.event}'`));
  }
  let result: unknown;
  try {
    result = (listener as (data: unknown) => unknown)(frame.data);
  } catch (error) {
    return Promise.resolve(encodeAckError(ack, messageOf(error)));
  }
  return Promise.resolve(result).then(
    (value) => encodeResult(ack, value),
    (error: unknown) => encodeAckError(ack, messageOf(error)),
  );
}
