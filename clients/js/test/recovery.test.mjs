// Session recovery against a real gateway (test/recovery_app.py under hypercorn, history in
// memory), through a TCP proxy that cuts connections the way a network does.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  CutProxy,
  WebSocket,
  fastClient,
  nextLifecycle,
  startServer,
  withTimeout,
} from "./helpers.mjs";

const APP = "clients.js.test.recovery_app:app";
const RESUME = "gatewayasgi.resume.";
const WAIT = 15000;

/** Poll `predicate` until true, within `ms`. */
async function until(predicate, ms, label) {
  await withTimeout(
    (async () => {
      while (!predicate()) await new Promise((done) => setTimeout(done, 10));
    })(),
    ms,
    label,
  );
}

/**
 * A WebSocket class that records every raw frame its sockets receive (into `log`, parsed), so
 * the test sees what the listeners never do: `$session` frames and offsets.
 */
function tappedWebSocket(log) {
  return class TappedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("message", (event) => {
        const data = event.data;
        log.push(JSON.parse(typeof data === "string" ? data : Buffer.from(data).toString()));
      });
    }
  };
}

let server;
const clients = [];
const proxies = [];

/** A proxy of its own in front of the shared server (a cut affects that test's clients only). */
async function newProxy() {
  const proxy = await new CutProxy(server.port).start();
  proxies.push(proxy);
  return proxy;
}

function client(url, options = {}) {
  const gateway = fastClient(url, WAIT, options);
  clients.push(gateway);
  return gateway;
}

/** A client that records its events (`seen`: [event, data] from onAny) and raw frames (`wire`). */
function member(url, options = {}) {
  const wire = [];
  const gateway = client(url, { WebSocket: tappedWebSocket(wire), ...options });
  const seen = [];
  gateway.onAny((event, data) => seen.push([event, data]));
  return { gateway, seen, wire };
}

/** Connect and wait for the first connection's `$session` (it comes right after `connect`). */
async function connectWithSession(gateway) {
  const session = nextLifecycle(gateway, "session", WAIT);
  await withTimeout(gateway.connect(), WAIT, "connect");
  return session;
}

const chat = (port) => `ws://127.0.0.1:${port}/chat`;

/** The server's record of connections (id, recovered, offered subprotocols, query) of `id`. */
async function connectionsOf(observer, id) {
  const all = await observer.emitWithAck("connections");
  return all.filter((connection) => connection.id === id);
}

before(async () => {
  server = await startServer(undefined, APP);
});

after(async () => {
  for (const gateway of clients) gateway.close();
  for (const proxy of proxies) await proxy.close();
  await server?.stop();
});

describe("session recovery against a gatewayasgi server", () => {
  it("a stream goes on across cuts that the session survives: every item once, in order", async () => {
    const proxy = await newProxy();
    const { gateway } = member(chat(proxy.port));
    await connectWithSession(gateway);
    const got = [];
    const stream = gateway.stream("tokens", { count: 60, delay: 0.01 }, { timeout: WAIT });
    for await (const n of stream) {
      got.push(n);
      if (n === 10 || n === 40) assert.equal(proxy.cut(), 1);
    }
    assert.deepEqual(got, Array.from({ length: 60 }, (_, n) => n));
    assert.equal(gateway.recovered, true);
  });

  it("a cut client resumes on its own: same id, the 300 missed frames once in order, then live ones", async () => {
    const proxy = await newProxy();
    const { gateway, seen, wire } = member(chat(proxy.port));
    const first = await connectWithSession(gateway);
    assert.equal(first.recovered, false);
    assert.match(first.id, /^c_[0-9a-f]{32}$/);
    assert.equal(gateway.id, first.id);
    assert.deepEqual(await gateway.emitWithAck("join", "r1"), { joined: "r1", id: first.id });
    const sender = client(chat(server.port));
    await withTimeout(sender.connect(), WAIT, "sender connect");

    const said = () => seen.filter(([event]) => event === "said").map(([, n]) => n);
    await sender.emitWithAck("say", { room: "r1", n: -1 });
    await until(() => said().length === 1, WAIT, "first frame");

    // Cut while the sender emits 300 frames to the room; hold the reconnection until they are in.
    const disconnected = nextLifecycle(gateway, "disconnect", WAIT);
    const reconnected = nextLifecycle(gateway, "connect", WAIT);
    proxy.hold();
    assert.equal(proxy.cut(), 1);
    assert.equal((await disconnected).willReconnect, true);
    assert.equal(await sender.emitWithAck("burst", { room: "r1", count: 300 }), "done");
    const beforeCut = wire.filter((frame) => frame.event === "said");
    proxy.release();

    assert.deepEqual(await reconnected, { recovered: true });
    assert.equal(gateway.recovered, true);
    assert.equal(gateway.id, first.id);
    await until(() => said().length === 301, WAIT, "the 300 missed frames");
    await sender.emitWithAck("say", { room: "r1", n: 1000 });
    await until(() => said().includes(1000), WAIT, "a live frame");
    assert.deepEqual(said(), [-1, ...Array.from({ length: 300 }, (_, n) => n), 1000]);

    // A second cut, this time in the middle of a burst (wherever it lands), live frames after.
    const again = nextLifecycle(gateway, "connect", WAIT);
    gateway.on("said", (n) => {
      if (n === 1020) proxy.cut();
    });
    const burst = sender.emitWithAck("burst", { room: "r1", start: 1001, count: 300 });
    assert.deepEqual(await again, { recovered: true });
    assert.equal(await burst, "done");
    await sender.emitWithAck("say", { room: "r1", n: 5000 });
    await until(() => said().includes(5000), WAIT, "the live frame after the second cut");
    assert.deepEqual(said(), [
      -1,
      ...Array.from({ length: 300 }, (_, n) => n),
      ...Array.from({ length: 301 }, (_, n) => 1000 + n),
      5000,
    ]);

    // Offsets: on every recoverable frame, each once, increasing (the memory history counts up
    // from 1; clients treat offsets as opaque, the test knows the server).
    const offsets = wire.filter((f) => f.event === "said").map((f) => Number(f.offset));
    assert.equal(offsets.length, said().length);
    for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i] > offsets[i - 1], `offset ${i}`);

    // What the server saw: nothing offered at first; then the credential (as subprotocols only,
    // never in the query) naming the last frame received before the cut.
    const connections = await connectionsOf(sender, first.id);
    assert.equal(connections.length, 3);
    assert.deepEqual(connections[0], { id: first.id, recovered: false, subprotocols: [], query: "" });
    const [protocol, credential] = connections[1].subprotocols;
    assert.equal(connections[1].recovered, true);
    assert.equal(connections[1].query, "");
    assert.equal(protocol, "gatewayasgi");
    assert.ok(credential.startsWith(`${RESUME}${first.id}.`), credential);
    assert.ok(credential.endsWith(`.${beforeCut.at(-1).offset}`), credential);
    assert.equal(connections[2].recovered, true);

    // `$session` frames arrived on every connection, and never reached a listener.
    assert.equal(wire.filter((frame) => frame.event === "$session").length, 3);
    assert.ok(!seen.some(([event]) => event.startsWith("$")));
    // A cut is not the end of a session: on_disconnect has not run for it.
    assert.ok(!(await sender.emitWithAck("disconnections")).includes(first.id));
  });

  it("recover: false offers no credential: every connection is a new session", async () => {
    const proxy = await newProxy();
    const { gateway, seen, wire } = member(chat(proxy.port), { recover: false });
    const first = await connectWithSession(gateway);
    await gateway.emitWithAck("join", "r2");
    const reconnected = nextLifecycle(gateway, "connect", WAIT);
    const session = nextLifecycle(gateway, "session", WAIT);
    assert.equal(proxy.cut(), 1);
    assert.deepEqual(await reconnected, { recovered: false });
    const second = await session;
    assert.notEqual(second.id, first.id);
    assert.equal(gateway.id, second.id);
    for (const id of [first.id, second.id]) {
      const [connection] = await connectionsOf(gateway, id);
      assert.deepEqual(connection.subprotocols, []);
    }
    assert.equal(wire.filter((frame) => frame.event === "$session").length, 2);
    assert.ok(!seen.some(([event]) => event.startsWith("$")));
  });

});

/**
 * `close()` then an observer polls the server's record of ended sessions. The window is 30 s:
 * only a clean close ends a session within `ms`; one closed with 4000 keeps waiting.
 */
async function closeEndsTheSession(port, ms) {
  const { gateway: kept } = member(chat(port));
  const { id: keptId } = await connectWithSession(kept);
  kept.close(4000, "back soon");
  assert.equal(kept.id, keptId);
  const { gateway } = member(chat(port));
  const { id } = await connectWithSession(gateway);
  gateway.close();
  assert.equal(gateway.id, undefined);
  const observer = client(chat(port));
  await withTimeout(observer.connect(), WAIT, "observer connect");
  let ended = [];
  await withTimeout(
    (async () => {
      while (!(ended = await observer.emitWithAck("disconnections")).includes(id)) {
        await new Promise((done) => setTimeout(done, 20));
      }
    })(),
    ms,
    "on_disconnect after close()",
  );
  assert.equal(ended.filter((ended) => ended === id).length, 1);
  assert.ok(!ended.includes(keptId));
}

describe("close() sends 1000, which ends the session on the server at once", () => {
  let own;
  after(async () => {
    await own?.stop();
  });

  it("under uvicorn", async () => {
    own = await startServer(undefined, APP, "uvicorn");
    await closeEndsTheSession(own.port, WAIT);
  });

  // hypercorn (0.18) reports `websocket.disconnect` with code 1006 whenever the client starts
  // the closing handshake, whatever code it sent: the `$end` frame sent by close() says it.
  it("under hypercorn", async () => {
    await closeEndsTheSession(server.port, WAIT);
  });
});

describe("a resume the server cannot honour", () => {
  let own;
  after(async () => {
    await own?.stop();
  });

  it("after a server restart (new epoch): recovered false, reason epoch, a new id that works", async () => {
    own = await startServer(undefined, APP);
    const url = `ws://127.0.0.1:${own.port}/chat`;
    const { gateway, seen } = member(url);
    const first = await connectWithSession(gateway);
    await gateway.emitWithAck("join", "r3");

    const disconnected = nextLifecycle(gateway, "disconnect", WAIT);
    await own.stop();
    assert.equal((await disconnected).willReconnect, true);
    const reconnected = nextLifecycle(gateway, "connect", 30000);
    own = await startServer(own.port, APP);
    assert.deepEqual(await reconnected, { recovered: false, reason: "epoch" });
    assert.equal(gateway.recovered, false);
    assert.notEqual(gateway.id, first.id);
    assert.match(gateway.id, /^c_[0-9a-f]{32}$/);

    // The client asked to resume (the credential was offered), and works on as a new session.
    const [connection] = await connectionsOf(gateway, gateway.id);
    assert.equal(connection.recovered, false);
    assert.ok(connection.subprotocols[1].startsWith(`${RESUME}${first.id}.`));
    assert.deepEqual(await gateway.emitWithAck("join", "r3"), { joined: "r3", id: gateway.id });
    const sender = client(url);
    await withTimeout(sender.connect(), WAIT, "sender connect");
    await sender.emitWithAck("say", { room: "r3", n: 7 });
    await until(() => seen.some(([event, n]) => event === "said" && n === 7), WAIT, "a live frame");
    assert.ok(!seen.some(([event]) => event.startsWith("$")));
  });
});
