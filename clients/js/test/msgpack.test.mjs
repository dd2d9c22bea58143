// The client with `wireProtocol: "msgpack"` against a real gateway (test/msgpack_app.py under
// hypercorn): binary frames, bytes as bytes, errors, rooms shared with JSON clients, server calls,
// session recovery; and a server that does not speak MessagePack.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { decode, encode } from "@msgpack/msgpack";

import { AckError, GatewayClient } from "../dist/index.js";
import { WebSocket, nextEvent, nextLifecycle, startServer, withTimeout } from "./helpers.mjs";

const APP = "clients.js.test.msgpack_app:app";
const WAIT = 5000;

let server;
let plain;
const clients = [];

function client(path, options = {}) {
  const gateway = new GatewayClient(`ws://127.0.0.1:${server.port}${path}`, {
    WebSocket,
    wireProtocol: "msgpack",
    auth: { token: "good" },
    reconnectDelay: 50,
    reconnectDelayMax: 400,
    ackTimeout: WAIT,
    ...options,
  });
  clients.push(gateway);
  return gateway;
}

async function connected(path = "/ws", options = {}) {
  const gateway = client(path, options);
  await withTimeout(gateway.connect(), WAIT, "connect");
  return gateway;
}

before(async () => {
  [server, plain] = await Promise.all([startServer(undefined, APP), startServer()]);
});

after(async () => {
  for (const gateway of clients) gateway.close();
  await Promise.all([server?.stop(), plain?.stop()]);
});

describe("wireProtocol: msgpack", () => {
  it("sends and receives binary frames; Uint8Array data stays bytes", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=good`, [
      "gatewayasgi.msgpack",
    ]);
    ws.binaryType = "arraybuffer";
    await withTimeout(new Promise((done) => (ws.onopen = done)), WAIT, "open");
    assert.equal(ws.protocol, "gatewayasgi.msgpack");
    const reply = new Promise((done) => (ws.onmessage = (event) => done(event.data)));
    ws.send(encode({ event: "echo", data: { blob: new Uint8Array([0, 255]) }, id: 1 }));
    const raw = await withTimeout(reply, WAIT, "reply");
    assert.ok(raw instanceof ArrayBuffer, "a binary frame");
    assert.deepEqual(decode(new Uint8Array(raw)), {
      event: "echo",
      data: { blob: new Uint8Array([0, 255]) },
      id: 1,
    });
    ws.close();

    const gateway = await connected();
    const blob = new Uint8Array(300).map((_, i) => i % 256);
    assert.deepEqual(await gateway.emitWithAck("echo", { blob, n: 1.5, s: "é" }), {
      blob,
      n: 1.5,
      s: "é",
    });
  });

  it("rejects with the error frame: pydantic errors are reachable", async () => {
    const gateway = await connected();
    await assert.rejects(gateway.emitWithAck("add", { x: 1, y: "two" }), (error) => {
      assert.ok(error instanceof AckError);
      assert.deepEqual(
        error.data.errors.map((entry) => entry.loc),
        [["y"]],
      );
      return true;
    });
    await assert.rejects(gateway.emitWithAck("fail", { why: "x" }), (error) => {
      assert.equal(error.data.message, "Nope");
      assert.equal(error.data.code, "E_NOPE");
      return true;
    });
  });

  it("shares rooms with JSON clients", async () => {
    const mp = await connected();
    const js = await connected("/ws", { wireProtocol: "json" });
    for (const member of [mp, js]) {
      assert.deepEqual(await member.emitWithAck("join", { room: "r" }), { room: "r" });
    }
    const heard = [nextEvent(mp, "said"), nextEvent(js, "said")];
    js.emit("say", { room: "r", text: "hi" });
    assert.deepEqual(await Promise.all(heard), [{ text: "hi" }, { text: "hi" }]);
  });

  it("answers the server's calls in MessagePack, bytes included", async () => {
    const [callee, caller] = [await connected(), await connected("/ws", { wireProtocol: "json" })];
    callee.on("ask", async ({ n }) => ({ doubled: n * 2, raw: new Uint8Array([n]) }));
    callee.on("boom", () => {
      throw new Error("client says no");
    });
    const target = await callee.emitWithAck("my_id");
    const call = (event, data) => caller.emitWithAck("call", { target, event, data, timeout: 5 });
    // The JSON caller reads the answer's bytes as base64 text.
    assert.deepEqual(await call("ask", { n: 21 }), { data: { doubled: 42, raw: "FQ==" } });
    assert.deepEqual(await call("boom", null), { error: "client says no" });
  });

  it("resumes its session and receives every missed frame once", async () => {
    const listener = await connected("/chat");
    const { id: first } = await listener.emitWithAck("join", "lobby");
    assert.equal(listener.id, first);
    const sender = await connected("/chat", { wireProtocol: "json" });
    // Closed with a code other than 1000: the session waits for a resume.
    listener.close(4999, "away");
    assert.equal(await sender.emitWithAck("burst", { room: "lobby", count: 20 }), "done");
    const got = [];
    listener.on("said", (n) => got.push(n));
    const reconnected = nextLifecycle(listener, "connect", WAIT);
    await withTimeout(listener.connect(), WAIT, "resume");
    assert.deepEqual(await reconnected, { recovered: true });
    assert.equal(listener.id, first);
    assert.equal(await sender.emitWithAck("say", { room: "lobby", n: "live" }), "ok");
    await withTimeout(
      (async () => {
        while (got.length < 21) await new Promise((done) => setTimeout(done, 10));
      })(),
      WAIT,
      "every frame",
    );
    assert.deepEqual(got, [...Array.from({ length: 20 }, (_, n) => n), "live"]);
  });

  it("fails for good against a server that does not speak it", async () => {
    const gateway = new GatewayClient(plain.url, {
      WebSocket,
      wireProtocol: "msgpack",
      auth: { token: "good" },
      reconnectDelay: 50,
    });
    clients.push(gateway);
    await assert.rejects(withTimeout(gateway.connect(), WAIT, "connect"), /does not speak msgpack/);
    assert.equal(gateway.state, "closed");
  });
});
