// Type-level test (`npm run typecheck`): every `@ts-expect-error` line must fail to compile,
// every other line must compile. Nothing here runs.
import { WebSocket } from "ws";

import {
  AckError,
  type ConnectionState,
  GatewayClient,
  GatewayStream,
  StreamTimeoutError,
  type LifecycleEvents,
  type RecoveryReason,
  type SessionEvent,
} from "../dist/index.js";

interface ServerEvents {
  said: { text: string };
  /** A server call: the listener's return value is the answer. */
  ask: (question: { n: number }) => { doubled: number };
}

interface ClientEvents {
  join: { room: string };
  /** Acknowledged: `emitWithAck("add", ...)` resolves with the function's return type. */
  add: (point: { x: number; y: number }) => { sum: number };
  ping: undefined;
  /** A stream: `stream("prompt", ...)` yields `{ delta: string }` items. */
  prompt: (body: { text: string }) => AsyncIterable<{ delta: string }>;
}

declare function assertType<T>(value: T): void;

const client = new GatewayClient<ServerEvents, ClientEvents>("ws://localhost/ws", {
  WebSocket, // the `ws` package's constructor fits the option
  auth: async () => ({ token: "t", attempt: 1, debug: undefined }),
  protocols: ["v1"],
  bufferOverflow: "reject-new",
});

client.emit("join", { room: "lobby" });
client.emit("ping");
client.emit("add", { x: 1, y: 2 });
// @ts-expect-error room must be a string
client.emit("join", { room: 1 });
// @ts-expect-error data is required for join
client.emit("join");
// @ts-expect-error unknown client event
client.emit("leave", { room: "lobby" });
// @ts-expect-error said is a server event, not a client one
client.emit("said", { text: "hi" });

async function acks(): Promise<void> {
  const reply = await client.emitWithAck("add", { x: 1, y: 2 }, { timeout: 500 });
  assertType<{ sum: number }>(reply);
  // @ts-expect-error the reply has no `total`
  reply.total;
  const untyped = await client.emitWithAck("join", { room: "a" });
  assertType<unknown>(untyped);
  // @ts-expect-error y is missing
  await client.emitWithAck("add", { x: 1 });
  try {
    await client.emitWithAck("ping");
  } catch (error) {
    if (error instanceof AckError) assertType<unknown>(error.data.errors);
  }
}

async function streams(): Promise<void> {
  const controller = new AbortController(); // Node's AbortSignal fits the option
  const options = { signal: controller.signal, timeout: 5 };
  const stream = client.stream("prompt", { text: "hi" }, options);
  assertType<GatewayStream<{ delta: string }>>(stream);
  for await (const item of stream) assertType<string>(item.delta);
  assertType<Promise<unknown>>(stream.result);
  assertType<[number, string, boolean]>([stream.id, stream.event, stream.cancelled]);
  stream.cancel();
  // @ts-expect-error text must be a string
  client.stream("prompt", { text: 1 });
  // @ts-expect-error the data is required
  client.stream("prompt");
  // @ts-expect-error timeout is a number of ms
  client.stream("prompt", { text: "hi" }, { timeout: "5s" });
  // @ts-expect-error cancelled is read-only
  stream.cancelled = true;
  for await (const item of client.stream("join", { room: "a" })) assertType<unknown>(item);
  for await (const item of loose.stream("anything")) assertType<unknown>(item);
  try {
    await stream.result;
  } catch (error) {
    if (error instanceof StreamTimeoutError) assertType<number>(error.timeout);
  }
  // Keyed streams: a key on the request; attachStream re-attaches (its items are `T`, default
  // unknown), from a position.
  const keyed = client.stream("prompt", { text: "hi" }, { key: "chat-1", timeout: 5 });
  assertType<string | undefined>(keyed.key);
  const attached = client.attachStream<{ delta: string }>("chat-1", {
    after: keyed.position,
    signal: controller.signal,
    timeout: 5,
  });
  assertType<GatewayStream<{ delta: string }>>(attached);
  for await (const item of attached) assertType<string>(item.delta);
  assertType<boolean>(attached.missing);
  for await (const item of client.attachStream("chat-2")) assertType<unknown>(item);
  // @ts-expect-error a key is a string
  client.stream("prompt", { text: "hi" }, { key: 1 });
  // @ts-expect-error after is a sequence number
  client.attachStream("chat-1", { after: "3" });
  // @ts-expect-error the key is required
  client.attachStream();
  // @ts-expect-error missing and position are read-only
  attached.missing = true;
  // @ts-expect-error read-only
  attached.position = 2;
}

client.on("said", (data) => assertType<string>(data.text));
client.on("ask", ({ n }) => ({ doubled: n * 2 }));
client.on("ask", async ({ n }) => ({ doubled: n * 2 }));
// @ts-expect-error the answer must be { doubled: number }
client.on("ask", ({ n }) => ({ tripled: n * 3 }));
// @ts-expect-error said carries { text: string }
client.on("said", (data: { text: number }) => data);
// @ts-expect-error unknown server event
client.on("unknown", () => undefined);
client.onAny((event, data) => assertType<[string, unknown]>([event, data]));

client.lifecycle.on("disconnect", ({ code, reason, willReconnect }) => {
  assertType<[number, string, boolean]>([code, reason, willReconnect]);
});
// @ts-expect-error not a lifecycle event
client.lifecycle.on("said", () => undefined);
const state: ConnectionState = client.state;
// @ts-expect-error lifecycle events cannot be emitted from outside
client.lifecycle.emit("connect", { recovered: false });
type Connect = LifecycleEvents["connect"];
const connect: Connect = { recovered: client.recovered };

// Session recovery: the id, the reason a resume failed, frames lost on an open connection.
const id: string | undefined = client.id;
client.lifecycle.on("connect", ({ recovered, reason }) => {
  assertType<[boolean, RecoveryReason | undefined]>([recovered, reason]);
});
client.lifecycle.on("session", (session: SessionEvent) => assertType<string>(session.id));
client.lifecycle.on("recovery_failed", ({ id, reason }) => {
  assertType<[string, RecoveryReason | null]>([id, reason]);
});
const reason: RecoveryReason = "epoch";
// Frames lost between the server's workers (gateways without recovery): `$gap`.
client.lifecycle.on("gap", ({ reason }) => assertType<string>(reason));
const gap: LifecycleEvents["gap"] = { reason: "backplane" };
const gaps: number = client.gaps;
// @ts-expect-error gaps is read-only
client.gaps = 0;
// @ts-expect-error the reason is a string
client.lifecycle.on("gap", ({ reason }: { reason: number }) => reason);
new GatewayClient("ws://localhost/ws", { recover: false });
// @ts-expect-error recover is a boolean
new GatewayClient("ws://localhost/ws", { recover: "yes" });
// @ts-expect-error the id is read-only
client.id = "c_1";

// Without event maps, anything goes.
const loose = new GatewayClient("ws://localhost/ws");
loose.emit("anything", { at: 1 });
loose.emit("nothing");
loose.on("whatever", (data) => data);

void acks;
void streams;
void state;
void connect;
void id;
void reason;
void gap;
void gaps;
