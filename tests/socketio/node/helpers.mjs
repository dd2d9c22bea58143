// Shared by the *.test.mjs files: the server under test (its URL comes from
// tests/socketio/test_node_client.py), the transport mode, sockets that are closed after
// each test, and waits that always have a deadline.
import assert from "node:assert/strict";
import { afterEach } from "node:test";

import { io } from "socket.io-client";
import { WebSocket as WsWebSocket } from "ws";

/** `http://127.0.0.1:PORT` of the gateway app (tests/socketio/nodeapp.py). */
export const URL = process.env.GATEWAY_SIO_URL;
/** `http://127.0.0.1:PORT` of the test's control server (stop / start the app). */
export const CONTROL = process.env.GATEWAY_SIO_CONTROL;
/** `"websocket"`: WebSocket only; `"default"`: polling first, then the upgrade. */
export const MODE = process.env.GATEWAY_SIO_MODE ?? "default";

if (!URL) throw new Error("GATEWAY_SIO_URL is not set: run these through test_node_client.py");

/** Node 22+ has a global WebSocket; Node 20 gets the `ws` package's. */
export const WebSocket = globalThis.WebSocket ?? WsWebSocket;

export const WAIT = 5000;

/** The client options of the mode, plus fast reconnection and `extra`. */
export function options(extra = {}) {
  return {
    ...(MODE === "websocket" ? { transports: ["websocket"] } : {}),
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    timeout: WAIT,
    ...extra,
  };
}

const sockets = new Set();
const natives = new Set();
const managers = new WeakSet();

/** A socket on `namespace` (a new Manager unless `multiplex`); closed after the test. */
export function socket(namespace = "/", extra = {}) {
  const { multiplex, ...rest } = extra;
  const made = io(URL + namespace, options({ forceNew: !multiplex, ...rest }));
  if (!managers.has(made.io)) {
    managers.add(made.io);
    /** The transport a new Engine.IO connection started on. */
    made.startedOn = made.io.engine?.transport?.name;
  }
  sockets.add(made);
  return made;
}

/** A connected socket, checked to start the way the mode says. */
export async function connected(namespace = "/", extra = {}) {
  const made = socket(namespace, extra);
  await withTimeout(once(made, "connect"), WAIT, `connect ${namespace}`);
  const expected = MODE === "websocket" ? "websocket" : "polling";
  if (made.startedOn) assert.equal(made.startedOn, expected, "the first transport");
  if (MODE === "websocket") assert.equal(made.io.engine.transport.name, "websocket");
  return made;
}

/** After a default-mode connect the Engine.IO connection moves to WebSocket by itself. */
export async function upgraded(made) {
  await until(() => made.io.engine?.transport?.name === "websocket", "the upgrade to websocket");
}

/** A native-JSON WebSocket on the gateway path `path` (`{"event","data","id"?}` frames). */
export async function native(path) {
  const ws = new WebSocket(URL.replace(/^http/, "ws") + path);
  natives.add(ws);
  const frames = [];
  const waiters = [];
  ws.addEventListener("message", (message) => {
    frames.push(JSON.parse(String(message.data)));
    for (const waiter of waiters.splice(0)) waiter();
  });
  await withTimeout(
    new Promise((done, fail) => {
      ws.addEventListener("open", done, { once: true });
      ws.addEventListener("error", () => fail(new Error(`native connect ${path} failed`)), {
        once: true,
      });
    }),
    WAIT,
    `native connect ${path}`,
  );
  return {
    ws,
    frames,
    send(frame) {
      ws.send(JSON.stringify(frame));
    },
    /** The first frame received (or to come) that `match` accepts; removed from `frames`. */
    async next(match, label = "a native frame") {
      const deadline = Date.now() + WAIT;
      for (;;) {
        const index = frames.findIndex(match);
        if (index >= 0) return frames.splice(index, 1)[0];
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out: ${label}; got ${JSON.stringify(frames)}`);
        await withTimeout(new Promise((done) => waiters.push(done)), left, label).catch(() => {});
      }
    },
  };
}

afterEach(() => {
  for (const made of sockets) {
    made.io.reconnection(false);
    made.disconnect();
    made.io.engine?.close();
  }
  sockets.clear();
  for (const ws of natives) ws.close();
  natives.clear();
});

/** Reject with `label` if `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The arguments of the next `event` of `emitter` (a socket, a Manager, an engine). */
export function once(emitter, event) {
  return new Promise((done) => emitter.once(event, (...args) => done(args)));
}

/** The arguments of the next `event`, within `ms`. */
export function next(emitter, event, ms = WAIT) {
  const waiting = withTimeout(once(emitter, event), ms, `event ${event}`);
  waiting.catch(() => {}); // a test that failed first leaves no unhandled rejection
  return waiting;
}

/** Resolve once `check()` is true, polling; reject after `ms`. */
export async function until(check, label, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${label}`);
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Received binary as a Buffer, whether the transport gave a Buffer or an ArrayBuffer. */
export function bytes(value) {
  assert.ok(
    Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value),
    `expected binary, got ${typeof value}: ${JSON.stringify(value)}`,
  );
  return Buffer.isBuffer(value) ? value : Buffer.from(value);
}

/** Ask the test's control server to `action` ("stop", "start") the app, and wait for it. */
export async function control(action) {
  assert.ok(CONTROL, "GATEWAY_SIO_CONTROL is not set");
  const response = await fetch(`${CONTROL}/${action}`, {
    method: "POST",
    signal: AbortSignal.timeout(20000),
  });
  assert.equal(response.status, 200, await response.text());
}
