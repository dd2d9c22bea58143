/** The bounded buffer of frames emitted while offline, sent in order on the next connection. */
import type { Encoded } from "./codec.js";
import { BufferFullError } from "./errors.js";
import type { BufferOverflow } from "./types.js";

export interface OutboundFrame {
  readonly event: string;
  /** The encoded frame, ready for `socket.send`. */
  readonly text: Encoded;
  /** The `emitWithAck` id the frame carries, if any. */
  readonly ackId: number | undefined;
  /** The id of the stream the frame requests, if it does. */
  readonly streamId?: number;
}

export class SendBuffer {
  private frames: OutboundFrame[] = [];

  constructor(
    private readonly capacity: number,
    private readonly overflow: BufferOverflow,
  ) {}

  get size(): number {
    return this.frames.length;
  }

  /**
   * Keep `frame`. When full, `reject-new` throws `BufferFullError`; `drop-oldest` keeps it and
   * returns the oldest frame, now dropped (the new frame itself when the capacity is 0).
   */
  push(frame: OutboundFrame): OutboundFrame | undefined {
    if (this.frames.length < this.capacity) {
      this.frames.push(frame);
      return undefined;
    }
    if (this.overflow === "reject-new") throw new BufferFullError(frame.event, this.capacity);
    this.frames.push(frame);
    return this.frames.shift();
  }

  /** Take every frame, oldest first, leaving the buffer empty. */
  drain(): OutboundFrame[] {
    const frames = this.frames;
    this.frames = [];
    return frames;
  }

  /** Forget the frame carrying ack or stream `id` (its caller stopped waiting). */
  remove(id: number): void {
    this.frames = this.frames.filter((frame) => frame.ackId !== id && frame.streamId !== id);
  }

  overflowError(frame: OutboundFrame): BufferFullError {
    return new BufferFullError(frame.event, this.capacity);
  }
}
