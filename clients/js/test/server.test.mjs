// The client against a real gatewayasgi server (test/server_app.py under hypercorn).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AckError,
  AckTimeoutError,
  ConnectError,
  DisconnectedError,
  GatewayClient,
} from "../dist/index.js";
import {
  WebSocket,
  nextEvent,
  nextLifecycle,
  sleep,
  startServer,
  withTimeout,
} from "./helpers.mjs";

let server;
const clients = [];

function client(options = {}) {
  const gateway = new GatewayClient(server.url, {
    WebSocket,
    auth: { token: "good" },
    reconnectDelay: 50,
    reconnectDelayMax: 400,
    ackTimeout: 5000,
    ...options,
  });
  clients.push(gateway);
  return gateway;
}

async function connected(options) {
  const gateway = client(options);
  await withTimeout(gateway.connect(), 5000, "connect");
  return gateway;
}

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const gateway of clients) gateway.close();
  await server?.stop();
});

describe("against a gatewayasgi server", () => {
  it("emitWithAck resolves with the reply's data; emit's reply arrives as an event", async () => {
    const gateway = await connected();
    assert.equal(gateway.state, "connected");
    assert.deepEqual(await gateway.emitWithAck("echo", { hello: ["world", 1] }), {
      hello: ["world", 1],
    });
    const replied = nextEvent(gateway, "echo");
    gateway.emit("echo", "plain");
    assert.equal(await replied, "plain");
  });

  it("rejects with the error frame: pydantic errors and WsException details are reachable", async () => {
    const gateway = await connected();
    assert.deepEqual(await gateway.emitWithAck("add", { x: 1, y: 2 }), { sum: 3 });
    const invalid = await gateway.emitWithAck("add", { x: "a", y: 2 }).catch((e) => e);
    assert.ok(invalid instanceof AckError);
    assert.equal(invalid.message, "Invalid payload for WebSocket event 'add'");
    assert.ok(Array.isArray(invalid.data.errors));
    assert.deepEqual(invalid.data.errors[0].loc, ["x"]);
    const refused = await gateway.emitWithAck("fail", { why: 1 }).catch((e) => e);
    assert.deepEqual(refused.data, { message: "Nope", code: "E_NOPE", detail: { why: 1 } });
    const unknown = await gateway.emitWithAck("nope").catch((e) => e);
    assert.equal(unknown.message, "No handler for WebSocket event 'nope'");
    assert.equal(gateway.connected, true);
  });

  it("times out an ack the server never answers", async () => {
    const gateway = await connected();
    await assert.rejects(gateway.emitWithAck("slow", null, { timeout: 150 }), AckTimeoutError);
  });

  it("delivers room broadcasts to members", async () => {
    const [alice, bob] = [await connected(), await connected()];
    assert.deepEqual(await alice.emitWithAck("join", { room: "r1" }), { room: "r1" });
    const heard = nextEvent(alice, "said");
    bob.emit("say", { room: "r1", text: "hi" });
    assert.deepEqual(await heard, { text: "hi" });
  });

  it("answers client.call from the server: result, error, no handler, timeout", async () => {
    const [callee, caller] = [await connected(), await connected()];
    callee.on("ask", async ({ n }) => ({ doubled: n * 2 }));
    callee.on("boom", () => {
      throw new Error("client says no");
    });
    callee.on("stall", () => new Promise(() => {})); // never settles: the server times out
    const target = await callee.emitWithAck("my_id");
    const call = (event, data, timeout = 5) =>
      caller.emitWithAck("call", { target, event, data, timeout });
    assert.deepEqual(await call("ask", { n: 21 }), { data: { doubled: 42 } });
    assert.deepEqual(await call("boom", null), { error: "client says no" });
    assert.deepEqual(await call("nobody", null), {
      error: "No handler for server event 'nobody'",
    });
    assert.deepEqual(await call("stall", null, 0.2), { timeout: true });
    assert.deepEqual(await call("ask", { n: 1 }), { data: { doubled: 2 } });
  });

  it("does not reconnect after a guard closes with 1008", async () => {
    const gateway = await connected();
    const disconnected = nextLifecycle(gateway, "disconnect");
    gateway.emit("forbidden");
    const event = await disconnected;
    assert.equal(event.code, 1008);
    assert.equal(event.willReconnect, false);
    assert.equal(gateway.state, "closed");
    await sleep(200);
    assert.equal(gateway.state, "closed");
    await assert.rejects(gateway.emitWithAck("echo", 1), DisconnectedError);
  });

  it("does not reconnect after an app close code, and surfaces its reason", async () => {
    const gateway = await connected();
    const disconnected = nextLifecycle(gateway, "disconnect");
    gateway.emit("kick");
    const { code, reason, willReconnect, error } = await disconnected;
    assert.deepEqual([code, reason, willReconnect, error.terminal], [4001, "kicked", false, true]);
  });

  it("rejects connect() on a refused handshake (HTTP 403) without retrying", async () => {
    const tokens = ["bad", "good-2"];
    let attempts = 0;
    const gateway = client({
      auth: () => {
        attempts += 1;
        return { token: tokens.shift() ?? "good-n" };
      },
    });
    const refused = nextLifecycle(gateway, "connect_error");
    const error = await withTimeout(
      gateway.connect().then(
        () => null,
        (e) => e,
      ),
      5000,
      "connect() settles on a refusal",
    );
    assert.ok(error instanceof ConnectError, String(error));
    assert.deepEqual([error.status, error.terminal], [403, true]);
    assert.equal((await refused).error, error);
    assert.equal(gateway.state, "closed");
    assert.throws(() => gateway.emit("echo", 1), ConnectError);
    await sleep(300); // reconnectDelay is 50 ms: a retry would have happened by now
    assert.equal(attempts, 1);
    // Retrying is the app's call: connect() again, and the auth function gives fresh credentials.
    await withTimeout(gateway.connect(), 5000, "connect after a refusal");
    assert.equal(attempts, 2);
    assert.deepEqual(await gateway.emitWithAck("whoami"), { token: "good-2" });
  });

  it("reconnects after a drop, but stops when the reconnection is refused", async () => {
    let token = "good-1";
    const gateway = await connected({ auth: () => ({ token }) });
    token = "revoked";
    const disconnected = nextLifecycle(gateway, "disconnect");
    const errors = [];
    gateway.lifecycle.on("connect_error", ({ error }) => errors.push(error));
    await server.stop();
    assert.equal((await disconnected).willReconnect, true);
    server = await startServer(server.port);
    const stopped = withTimeout(
      (async () => {
        while (gateway.state !== "closed") await sleep(20);
      })(),
      10000,
      "the client closes on the refused reconnection",
    );
    await stopped;
    const last = errors.at(-1);
    assert.ok(last instanceof ConnectError, String(last));
    assert.equal(last.status, 403);
    // Attempts while the server was down (connection refused) were retried, the 403 was not.
    assert.ok(errors.slice(0, -1).every((error) => !(error instanceof ConnectError)));
    const seen = errors.length;
    await sleep(300);
    assert.equal(errors.length, seen);
    await assert.rejects(gateway.emitWithAck("echo", 1), ConnectError);
  });

  it("reconnects both clients when the server restarts on the same port", async () => {
    let round = 0;
    const options = { auth: () => ({ token: `good-${round}` }) };
    const [alice, bob] = [await connected(options), await connected(options)];
    alice.lifecycle.on("connect", () => alice.emit("join", { room: "after" }));
    await alice.emitWithAck("join", { room: "after" });
    const pending = alice.emitWithAck("slow", null, { timeout: 10000 }).catch((e) => e);

    const down = [nextLifecycle(alice, "disconnect"), nextLifecycle(bob, "disconnect")];
    await server.stop();
    for (const { willReconnect } of await Promise.all(down)) assert.equal(willReconnect, true);
    const lost = await pending;
    assert.ok(lost instanceof DisconnectedError);
    assert.equal(lost.terminal, false);

    round = 1;
    const offline = bob.emitWithAck("echo", "sent while offline");
    const up = [nextLifecycle(alice, "connect", 15000), nextLifecycle(bob, "connect", 15000)];
    server = await startServer(server.port);
    assert.deepEqual(await Promise.all(up), [{ recovered: false }, { recovered: false }]);
    assert.equal(await withTimeout(offline, 5000, "buffered ack"), "sent while offline");
    assert.deepEqual(await alice.emitWithAck("whoami"), { token: "good-1" });
    const heard = nextEvent(alice, "said");
    await bob.emitWithAck("echo", "bob is back");
    bob.emit("say", { room: "after", text: "welcome back" });
    assert.deepEqual(await heard, { text: "welcome back" });
  });
});
