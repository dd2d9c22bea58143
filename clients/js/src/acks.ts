/** Acks the client waits for: one entry per `emitWithAck`, keyed by the frame id it sent. */
import { AckTimeoutError } from "./errors.js";

const MAX_TIMER_MS = 2 ** 31 - 1;

interface PendingAck {
  readonly event: string;
  readonly resolve: (data: unknown) => void;
  readonly reject: (error: Error) => void;
  timer: unknown;
  /** Whether the frame went out on a socket; unsent ones survive a disconnect in the buffer. */
  sent: boolean;
}

export class PendingAcks {
  private nextId = 1;
  private readonly entries = new Map<number, PendingAck>();

  /**
   * Wait for the reply to a new frame id. After `timeout` ms (none when not finite) the promise
   * rejects with `AckTimeoutError` and `expired(id)` runs, so the caller can unbuffer the frame.
   */
  open(
    event: string,
    timeout: number,
    resolve: (data: unknown) => void,
    reject: (error: Error) => void,
    expired: (id: number) => void,
  ): number {
    const id = this.newId();
    const entry: PendingAck = { event, resolve, reject, timer: undefined, sent: false };
    if (Number.isFinite(timeout)) {
      entry.timer = setTimeout(
        () => {
          this.entries.delete(id);
          expired(id);
          reject(new AckTimeoutError(event, timeout));
        },
        Math.min(Math.max(timeout, 0), MAX_TIMER_MS),
      );
    }
    this.entries.set(id, entry);
    return id;
  }

  /** A new frame id: acks and streams share the counter, so a reply's id names one of them. */
  newId(): number {
    return this.nextId++;
  }

  markSent(id: number): void {
    const entry = this.entries.get(id);
    if (entry) entry.sent = true;
  }

  /** Stop waiting for `id`; returns its entry (to resolve or reject) unless it was settled already. */
  settle(id: number): Pick<PendingAck, "event" | "resolve" | "reject"> | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    clearTimeout(entry.timer);
    return entry;
  }

  /** Reject the acks whose frame went out: their connection is gone, so their reply is too. */
  rejectSent(error: Error): void {
    for (const [id, entry] of this.entries) if (entry.sent) this.settle(id)?.reject(error);
  }

  rejectAll(error: Error): void {
    for (const id of [...this.entries.keys()]) this.settle(id)?.reject(error);
  }
}
