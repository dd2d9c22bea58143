// socket.io-client v4 against tests/socketio/nodeapp.py: auth, acks, errors, rooms,
// binary, several arguments, server -> client acks, namespaces.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  MODE,
  WAIT,
  bytes,
  connected,
  next,
  sleep,
  socket,
  upgraded,
  withTimeout,
} from "./helpers.mjs";

const AUTH = { auth: { token: "s3cret", user: "ada" } };
const T = { timeout: 20000 };

describe(`socket.io-client (${MODE})`, () => {
  it("a handshake guard refuses a wrong token with connect_error Forbidden", T, async () => {
    for (const auth of [{ token: "wrong" }, undefined]) {
      const refused = socket("/", auth ? { auth } : {});
      const [error] = await next(refused, "connect_error");
      assert.equal(error.message, "Forbidden");
      assert.equal(refused.connected, false);
      assert.equal(refused.active, false, "a refused CONNECT is not retried");
    }
  });

  it("the right token is accepted and the handler sees client.auth and client.id", T, async () => {
    const client = await connected("/", AUTH);
    const me = await client.timeout(WAIT).emitWithAck("whoami");
    assert.deepEqual(me.auth, AUTH.auth);
    assert.equal(me.id, client.id);
    await upgraded(client);
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("whoami"), me);
  });

  it("an unknown namespace answers connect_error Invalid namespace", T, async () => {
    const [error] = await next(socket("/nope", AUTH), "connect_error");
    assert.equal(error.message, "Invalid namespace");
  });

  it("emit with an ack gets the handler's return value", T, async () => {
    const client = await connected("/", AUTH);
    const data = { hello: ["world", 1, null, true], n: 1.5, text: "héllo ✓" };
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("echo", data), data);
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("echo", "plain"), "plain");
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("add", { x: 2, y: 3 }), { sum: 5 });
    const viaCallback = await withTimeout(
      new Promise((done) => client.emit("echo", [1, 2], (answer) => done(answer))),
      WAIT,
      "callback ack",
    );
    assert.deepEqual(viaCallback, [1, 2]);
    await upgraded(client);
  });

  it("emit without an ack: a plain return is not sent, {event, data} is emitted", T, async () => {
    const client = await connected("/", AUTH);
    const seen = [];
    client.onAny((event, ...args) => seen.push([event, ...args]));
    client.emit("echo", "not sent back");
    const notified = next(client, "notified");
    client.emit("notify", { n: 7 });
    assert.deepEqual(await notified, [{ n: 7 }]);
    // Frames of one connection are handled in order: echo was answered (or not) by now.
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("echo", "sync"), "sync");
    assert.deepEqual(seen, [["notified", { n: 7 }]]);
    await upgraded(client);
  });

  it("a validation error answers the ack with {error: {message}}", T, async () => {
    const client = await connected("/", AUTH);
    const answer = await client.timeout(WAIT).emitWithAck("add", { x: "not a number" });
    assert.equal(answer.error.message, "Invalid payload for WebSocket event 'add'");
    assert.ok(Array.isArray(answer.error.errors) && answer.error.errors.length === 2);
    const failed = await client.timeout(WAIT).emitWithAck("fail");
    assert.deepEqual(failed, { error: { message: "not today", code: 42 } });
    const unknown = await client.timeout(WAIT).emitWithAck("nobody-listens", 1);
    assert.equal(unknown.error.message, "No handler for WebSocket event 'nobody-listens'");
    // Without an ack the error comes as an `error` event; the socket stays connected.
    const error = next(client, "error");
    client.emit("add", { x: 1 });
    const [data] = await error;
    assert.equal(data.message, "Invalid payload for WebSocket event 'add'");
    assert.equal(client.connected, true);
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("add", { x: 1, y: 1 }), { sum: 2 });
    await upgraded(client);
  });

  it("two sockets in a room both receive its emits", T, async () => {
    const first = await connected("/", AUTH);
    const second = await connected("/", AUTH);
    const outsider = await connected("/", AUTH);
    const room = `room-${MODE}`;
    assert.deepEqual(await first.timeout(WAIT).emitWithAck("join", room), { joined: room });
    assert.deepEqual(await second.timeout(WAIT).emitWithAck("join", room), { joined: room });
    const heard = [];
    outsider.on("shouted", (message) => heard.push(message));
    const atFirst = next(first, "shouted");
    const atSecond = next(second, "shouted");
    const answer = await first.timeout(WAIT).emitWithAck("shout", { room, text: "hi all" });
    assert.deepEqual(answer, { delivered: 2 });
    const expected = [{ from: first.id, text: "hi all" }];
    assert.deepEqual(await atFirst, expected);
    assert.deepEqual(await atSecond, expected);
    const again = next(first, "shouted");
    await second.timeout(WAIT).emitWithAck("shout", { room, text: "back" });
    assert.deepEqual(await again, [{ from: second.id, text: "back" }]);
    await sleep(100);
    assert.deepEqual(heard, []);
    await Promise.all([first, second, outsider].map(upgraded));
  });

  it("binary: Buffers in, nested in an object, arrive as bytes and come back", T, async () => {
    const client = await connected("/", AUTH);
    const blob = Buffer.from([0, 1, 2, 250, 255]);
    const inner = Buffer.from("inner ✓");
    const data = { name: "file", blob, nested: { list: [inner, 3], empty: Buffer.alloc(0) } };
    const event = next(client, "binary");
    const answer = await client.timeout(WAIT).emitWithAck("binary", data);
    assert.deepEqual(answer.kinds, {
      name: "file",
      blob: "bytes:5",
      nested: { list: [`bytes:${inner.length}`, 3], empty: "bytes:0" },
    });
    for (const got of [answer, (await event)[0]]) {
      assert.deepEqual(bytes(got.reversed), Buffer.from([255, 250, 2, 1, 0]));
      assert.deepEqual(bytes(got.echo.blob), blob);
      assert.deepEqual(bytes(got.echo.nested.list[0]), inner);
      assert.equal(got.echo.nested.list[1], 3);
      assert.equal(bytes(got.echo.nested.empty).length, 0);
      assert.equal(got.echo.name, "file");
    }
    await upgraded(client);
  });

  it("several arguments arrive as Arguments; several are emitted and acked back", T, async () => {
    const client = await connected("/", AUTH);
    const many = next(client, "many");
    const described = next(client, "described");
    const answer = await withTimeout(
      new Promise((done) =>
        client.emit("args", 1, "two", { three: 3 }, Buffer.from([4]), (...args) => done(args)),
      ),
      WAIT,
      "args ack",
    );
    assert.equal(answer.length, 4);
    assert.deepEqual(bytes(answer[0]), Buffer.from([4]));
    assert.deepEqual(answer.slice(1), [{ three: 3 }, "two", 1]);
    assert.deepEqual(await described, [
      { type: "Arguments", items: [1, "two", { three: 3 }, "bytes:1"] },
    ]);
    const spread = await many;
    assert.deepEqual(spread.slice(0, 3), [1, "two", { three: 3 }]);
    assert.deepEqual(bytes(spread[3]), Buffer.from([4]));
    // One argument is the data itself (an array stays one argument); none is None.
    assert.deepEqual(await client.timeout(WAIT).emitWithAck("echo", [1, 2]), [1, 2]);
    const notified = next(client, "notified");
    client.emit("notify");
    assert.deepEqual(await notified, [null]);
    await upgraded(client);
  });

  it("server -> client ack: client.call gets the socket's ack answer", T, async () => {
    const client = await connected("/", AUTH);
    client.on("question", (data, ack) => ack({ doubled: data.n * 2 }));
    const answered = next(client, "answered");
    assert.equal(await client.timeout(WAIT).emitWithAck("ask", { n: 21 }), "asked");
    assert.deepEqual(await answered, [{ answer: { doubled: 42 }, several: false }]);
    // An answer of several arguments is an Arguments on the server.
    client.off("question");
    client.on("question", (data, ack) => ack("a", data.n));
    const again = next(client, "answered");
    await client.timeout(WAIT).emitWithAck("ask", { n: 5 });
    assert.deepEqual(await again, [{ answer: ["a", 5], several: true }]);
    await upgraded(client);
  });

  it("two namespaces over one Manager share one Engine.IO connection", T, async () => {
    const a = await connected("/a", { multiplex: true, auth: { who: "a" } });
    const b = await connected("/b", { multiplex: true, auth: { who: "b" } });
    assert.equal(a.io, b.io, "one Manager");
    assert.equal(a.io.engine, b.io.engine, "one Engine.IO connection");
    assert.notEqual(a.id, b.id);
    const [atA, atB] = await Promise.all([
      a.timeout(WAIT).emitWithAck("whoami"),
      b.timeout(WAIT).emitWithAck("whoami"),
    ]);
    assert.deepEqual(atA, { ns: "a", id: a.id, auth: { who: "a" } });
    assert.deepEqual(atB, { ns: "b", id: b.id, auth: { who: "b" } });
    // Leaving one namespace keeps the other (and the connection) up.
    const engine = a.io.engine;
    a.disconnect();
    await sleep(100);
    assert.equal(b.io.engine, engine);
    assert.deepEqual(await b.timeout(WAIT).emitWithAck("whoami"), atB);
    await upgraded(b);
  });
});
