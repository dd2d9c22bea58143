/** Listener bookkeeping shared by server events and lifecycle events. */
import type { LifecycleEvents } from "./types.js";

// Listeners are stored untyped; the typed facades (`GatewayClient.on`, `Lifecycle.on`) check them.
export type Listener = (...args: never[]) => unknown;

interface Entry {
  readonly fn: Listener;
  readonly once: boolean;
}

/** Listeners per event name, in registration order; a `once` listener is removed when taken. */
export class ListenerRegistry {
  private readonly entries = new Map<string, Entry[]>();

  add(event: string, fn: Listener, once: boolean): void {
    const list = this.entries.get(event);
    if (list) list.push({ fn, once });
    else this.entries.set(event, [{ fn, once }]);
  }

  /** Remove one registration of `fn`, every listener of `event`, or (no arguments) everything. */
  remove(event?: string, fn?: Listener): void {
    if (event === undefined) {
      this.entries.clear();
      return;
    }
    const list = this.entries.get(event);
    if (!list) return;
    const index = fn === undefined ? -1 : list.findIndex((entry) => entry.fn === fn);
    if (fn === undefined) list.length = 0;
    else if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.entries.delete(event);
  }

  /** The listeners to call for one occurrence of `event`, dropping the `once` ones. */
  take(event: string): Listener[] {
    const list = this.entries.get(event);
    if (!list) return [];
    const snapshot = list.map((entry) => entry.fn);
    const kept = list.filter((entry) => !entry.once);
    if (kept.length === 0) this.entries.delete(event);
    else if (kept.length !== list.length) this.entries.set(event, kept);
    return snapshot;
  }
}

/** Call `fn`, routing a throw or a rejected promise to `report`; returns what it returned. */
export function callSafely(
  fn: Listener,
  args: unknown[],
  report: (error: unknown) => void,
): unknown {
  try {
    const result = (fn as (...values: unknown[]) => unknown)(...args);
    if (isThenable(result)) result.then(undefined, report);
    return result;
  } catch (error) {
    report(error);
    return undefined;
  }
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

type LifecycleListener<K extends keyof LifecycleEvents> = (event: LifecycleEvents[K]) => void;

/**
 * Connection lifecycle events (`client.lifecycle.on("disconnect", ...)`), kept apart from server
 * events so that a gateway event named `connect` or `error` can never be mistaken for one.
 */
export class Lifecycle {
  private readonly registry = new ListenerRegistry();

  on<K extends keyof LifecycleEvents>(event: K, listener: LifecycleListener<K>): this {
    this.registry.add(event, listener as Listener, false);
    return this;
  }

  once<K extends keyof LifecycleEvents>(event: K, listener: LifecycleListener<K>): this {
    this.registry.add(event, listener as Listener, true);
    return this;
  }

  /** Remove one listener, every listener of `event`, or every lifecycle listener. */
  off<K extends keyof LifecycleEvents>(event?: K, listener?: LifecycleListener<K>): this {
    this.registry.remove(event, listener as Listener | undefined);
    return this;
  }

  /** @internal Deliver an event; a throwing listener is reported as an `error` event (once). */
  emit<K extends keyof LifecycleEvents>(event: K, payload: LifecycleEvents[K]): void {
    const report =
      event === "error"
        ? () => undefined
        : (error: unknown) => this.emit("error", { error: toError(error) });
    for (const listener of this.registry.take(event)) callSafely(listener, [payload], report);
  }
}
