// The client against a scripted fake WebSocket: no network, no server, deterministic.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AckError,
  AckTimeoutError,
  BufferFullError,
  ConnectError,
  DisconnectedError,
  GatewayClient,
  ReconnectFailedError,
  StreamTimeoutError,
  backoffDelay,
  isTerminalClose,
} from "../dist/index.js";
import { SessionTracker } from "../dist/recovery.js";
import { nextLifecycle, withTimeout } from "./helpers.mjs";

/** A WebSocket whose peer is the test: `open()`, `receive(frame)`, `drop(code, reason)`. */
class FakeSocket {
  static sockets = [];
  static refuse = false;

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.binaryType = "blob";
    this.sent = [];
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.sockets.push(this);
    if (FakeSocket.refuse) queueMicrotask(() => this.drop(1006, ""));
  }

  send(text) {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(text));
  }

  close(code = 1000, reason = "") {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  /** An implementation that reports why the handshake failed (`ws`: the HTTP status). */
  fail(message) {
    this.onerror?.({ message });
    this.drop(1006, "");
  }

  drop(code, reason) {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  static last() {
    return FakeSocket.sockets.at(-1);
  }
}

function client(options = {}) {
  FakeSocket.sockets = [];
  FakeSocket.refuse = false;
  return new GatewayClient("ws://fake/ws", {
    WebSocket: FakeSocket,
    reconnectDelay: 1,
    reconnectDelayMax: 5,
    ...options,
  });
}

/** Connect and open the fake socket; resolves once `connect()` has. */
async function connected(gateway) {
  const opened = gateway.connect();
  await withTimeout(
    (async () => {
      while (!FakeSocket.last()) await new Promise((done) => setTimeout(done, 1));
    })(),
    1000,
    "socket created",
  );
  FakeSocket.last().open();
  await opened;
  return FakeSocket.last();
}

const tick = () => new Promise((done) => setTimeout(done, 5));

describe("backoff", () => {
  it("draws uniformly below min(cap, base * 2^attempt)", () => {
    assert.equal(
      backoffDelay(0, 100, 1000, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(3, 100, 1000, () => 0.5),
      400,
    );
    assert.equal(
      backoffDelay(10, 100, 1000, () => 0.5),
      500,
    );
    assert.equal(
      backoffDelay(5000, 100, 1000, () => 0.999),
      999,
    );
    assert.equal(
      backoffDelay(4, 100, 1000, () => 0),
      0,
    );
  });

  it("treats 1008 and 4000-4999 as terminal", () => {
    assert.deepEqual([1000, 1001, 1006, 1008, 1011, 3999, 4000, 4999, 5000].map(isTerminalClose), [
      false,
      false,
      false,
      true,
      false,
      false,
      true,
      true,
      false,
    ]);
  });
});

describe("auth and url", () => {
  it("calls the auth function on every attempt and puts its params in the query", async () => {
    let calls = 0;
    const gateway = client({
      auth: async () => ({ token: `t${++calls}`, skip: undefined }),
      protocols: ["v1"],
    });
    const first = await connected(gateway);
    assert.equal(first.url, "ws://fake/ws?token=t1");
    assert.deepEqual(first.protocols, ["v1"]);
    assert.equal(first.binaryType, "arraybuffer");
    const reconnecting = nextLifecycle(gateway, "connecting");
    first.drop(1001, "going away");
    await reconnecting;
    await tick();
    assert.equal(FakeSocket.last().url, "ws://fake/ws?token=t2");
    gateway.close();
  });

  it("turns http(s) urls into ws(s)", async () => {
    FakeSocket.sockets = [];
    const gateway = new GatewayClient("https://fake/ws?a=1", { WebSocket: FakeSocket });
    gateway.connect();
    await tick();
    assert.equal(FakeSocket.last().url, "wss://fake/ws?a=1");
    gateway.close();
  });

  it("counts a throwing auth function as a failed attempt", async () => {
    const gateway = client({
      auth: () => {
        throw new Error("no token");
      },
      maxReconnectAttempts: 0,
    });
    const failed = nextLifecycle(gateway, "connect_error");
    await assert.rejects(gateway.connect(), ReconnectFailedError);
    assert.equal((await failed).error.message, "no token");
    assert.equal(gateway.state, "closed");
  });
  it("opens no socket when close() runs while the auth function is pending", async () => {
    let release;
    const gateway = client({ auth: () => new Promise((done) => (release = done)) });
    const connecting = gateway.connect();
    await tick();
    gateway.close();
    await assert.rejects(connecting, DisconnectedError);
    release({ token: "late" });
    await tick();
    assert.equal(FakeSocket.sockets.length, 0);
    assert.equal(gateway.state, "closed");
  });

  it("counts a handshake that outlasts connectTimeout as a failed attempt", async () => {
    const gateway = client({ connectTimeout: 10, maxReconnectAttempts: 1 });
    const errors = [];
    gateway.lifecycle.on("connect_error", ({ error }) => errors.push(error.message));
    await assert.rejects(withTimeout(gateway.connect(), 2000, "gave up"), ReconnectFailedError);
    assert.deepEqual(errors, [
      "Handshake timed out after 10 ms",
      "Handshake timed out after 10 ms",
    ]);
    assert.equal(FakeSocket.sockets.length, 2);
    assert.equal(FakeSocket.sockets[0].readyState, 3);
  });
});

describe("send buffer", () => {
  it("flushes frames emitted while offline in order, before the connect event", async () => {
    const gateway = client();
    gateway.emit("a", 1);
    gateway.emit("b", 2);
    assert.equal(gateway.bufferedCount, 2);
    let atConnect;
    gateway.lifecycle.on("connect", () => {
      atConnect = FakeSocket.last().sent.length;
    });
    const socket = await connected(gateway);
    gateway.emit("c");
    assert.deepEqual(socket.sent, [
      { event: "a", data: 1 },
      { event: "b", data: 2 },
      { event: "c", data: null },
    ]);
    assert.equal(atConnect, 2);
    gateway.close();
  });

  it("drop-oldest drops the oldest frame and rejects its ack", async () => {
    const gateway = client({ maxBufferedMessages: 2 });
    const oldest = gateway.emitWithAck("first", 1);
    gateway.emit("second", 2);
    gateway.emit("third", 3);
    await assert.rejects(oldest, BufferFullError);
    const socket = await connected(gateway);
    assert.deepEqual(
      socket.sent.map((frame) => frame.event),
      ["second", "third"],
    );
    gateway.close();
  });

  it("reject-new keeps the buffer and throws from emit", async () => {
    const gateway = client({ maxBufferedMessages: 1, bufferOverflow: "reject-new" });
    gateway.emit("first");
    assert.throws(() => gateway.emit("second"), BufferFullError);
    await assert.rejects(gateway.emitWithAck("third"), BufferFullError);
    const socket = await connected(gateway);
    assert.deepEqual(
      socket.sent.map((frame) => frame.event),
      ["first"],
    );
    gateway.close();
  });

  it("never sends a buffered frame whose ack timed out", async () => {
    const gateway = client();
    await assert.rejects(gateway.emitWithAck("late", null, { timeout: 5 }), AckTimeoutError);
    assert.equal(gateway.bufferedCount, 0);
    const socket = await connected(gateway);
    assert.deepEqual(socket.sent, []);
    gateway.close();
  });

  it("throws the closing error from emit once closed", async () => {
    const gateway = client();
    await connected(gateway);
    gateway.close(4000, "bye");
    const error = (() => {
      try {
        gateway.emit("x");
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof DisconnectedError);
    assert.equal(error.code, 4000);
    await assert.rejects(gateway.emitWithAck("x"), DisconnectedError);
  });
});

describe("acks", () => {
  it("resolves with the reply's data and rejects with the error frame's details", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const ok = gateway.emitWithAck("add", { x: 1 });
    const bad = gateway.emitWithAck("add", { x: "a" });
    const [okFrame, badFrame] = socket.sent;
    assert.equal(typeof okFrame.id, "number");
    assert.notEqual(okFrame.id, badFrame.id);
    socket.receive({ event: "add", data: { sum: 1 }, id: okFrame.id });
    socket.receive({
      event: "error",
      data: { message: "Invalid", errors: [{ loc: ["x"] }] },
      id: badFrame.id,
    });
    assert.deepEqual(await ok, { sum: 1 });
    const error = await bad.catch((e) => e);
    assert.ok(error instanceof AckError);
    assert.equal(error.message, "Invalid");
    assert.deepEqual(error.data.errors, [{ loc: ["x"] }]);
    gateway.close();
  });

  it("rejects sent acks on disconnect but keeps buffered ones for the next connection", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const sent = gateway.emitWithAck("sent");
    const disconnected = nextLifecycle(gateway, "disconnect");
    socket.drop(1006, "");
    const event = await disconnected;
    assert.equal(event.willReconnect, true);
    assert.equal(event.code, 1006);
    const error = await sent.catch((e) => e);
    assert.ok(error instanceof DisconnectedError);
    assert.equal(error.terminal, false);
    const buffered = gateway.emitWithAck("buffered", 7);
    await withTimeout(
      (async () => {
        while (FakeSocket.sockets.length < 2) await tick();
      })(),
      1000,
      "reconnect",
    );
    const next = FakeSocket.last();
    next.open();
    assert.equal(next.sent[0].event, "buffered");
    next.receive({ event: "buffered", data: 8, id: next.sent[0].id });
    assert.equal(await buffered, 8);
    gateway.close();
  });
});

describe("reconnection", () => {
  it("rejects connect() at once on a refusal: HTTP 4xx (not 408/429), 1008 or 4000-4999 before open", async () => {
    const refusals = [
      [(socket) => socket.fail("Unexpected server response: 403"), ConnectError],
      [(socket) => socket.fail("Unexpected server response: 404"), ConnectError],
      [(socket) => socket.drop(1008, ""), DisconnectedError],
      [(socket) => socket.drop(4003, "who are you"), DisconnectedError],
    ];
    for (const [refuse, kind] of refusals) {
      const gateway = client();
      const connecting = gateway.connect();
      await tick();
      refuse(FakeSocket.last());
      const error = await withTimeout(connecting.catch((e) => e), 1000, "connect() settles");
      assert.ok(error instanceof kind, String(error));
      assert.equal(error.terminal, true);
      await tick();
      assert.equal(FakeSocket.sockets.length, 1);
      assert.equal(gateway.state, "closed");
    }
  });

  it("retries a handshake refused with 408, 429 or 5xx, and a 1006 without a status", async () => {
    for (const message of [
      "Unexpected server response: 503",
      "Unexpected server response: 429",
      "connect ECONNREFUSED 127.0.0.1:1",
    ]) {
      const gateway = client({ maxReconnectAttempts: 1 });
      const errors = [];
      gateway.lifecycle.on("connect_error", ({ error }) => errors.push(error));
      const connecting = gateway.connect();
      await tick();
      FakeSocket.last().fail(message);
      await tick();
      assert.equal(FakeSocket.sockets.length, 2, message);
      FakeSocket.last().open();
      await withTimeout(connecting, 1000, "connected on the retry");
      if (message.startsWith("Unexpected")) {
        assert.ok(errors[0] instanceof ConnectError);
        assert.equal(errors[0].terminal, false);
      }
      gateway.close();
    }
  });

  it("does not reconnect after 1008 or 4000-4999 and reports code and reason", async () => {
    for (const code of [1008, 4001]) {
      const gateway = client();
      const socket = await connected(gateway);
      const pending = gateway.emitWithAck("x");
      const disconnected = nextLifecycle(gateway, "disconnect");
      socket.drop(code, "policy");
      const event = await disconnected;
      assert.deepEqual([event.code, event.reason, event.willReconnect], [code, "policy", false]);
      assert.equal(event.error.terminal, true);
      await assert.rejects(pending, DisconnectedError);
      await tick();
      assert.equal(FakeSocket.sockets.length, 1);
      assert.equal(gateway.state, "closed");
    }
  });

  it("gives up after maxReconnectAttempts with reconnect_failed", async () => {
    const gateway = client({ maxReconnectAttempts: 3 });
    const attempts = [];
    gateway.lifecycle.on("reconnect_attempt", ({ attempt, delay }) => {
      assert.ok(delay >= 0 && delay <= 5);
      attempts.push(attempt);
    });
    const socket = await connected(gateway);
    FakeSocket.refuse = true;
    const failed = nextLifecycle(gateway, "reconnect_failed");
    socket.drop(1006, "");
    assert.deepEqual(await failed, { attempts: 3 });
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.equal(FakeSocket.sockets.length, 4);
    assert.equal(gateway.state, "closed");
  });

  it("close() stops everything and reports a client-initiated disconnect", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const disconnected = nextLifecycle(gateway, "disconnect");
    gateway.close();
    assert.deepEqual(socket.closedWith, { code: 1000, reason: "" });
    const event = await disconnected;
    assert.equal(event.willReconnect, false);
    socket.drop(1000, "");
    await tick();
    assert.equal(FakeSocket.sockets.length, 1);
    assert.equal(gateway.connected, false);
    assert.equal(gateway.recovered, false);
  });
});

describe("server events and calls", () => {
  it("dispatches events to on/once/onAny listeners and survives a throwing one", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const seen = [];
    const errors = [];
    gateway.lifecycle.on("error", ({ error }) => errors.push(error.message));
    gateway.on("news", () => {
      throw new Error("listener broke");
    });
    gateway.on("news", (data) => seen.push(["on", data]));
    gateway.once("news", (data) => seen.push(["once", data]));
    gateway.onAny((event, data) => seen.push(["any", event, data]));
    socket.receive({ event: "news", data: 1 });
    socket.receive({ event: "news", data: 2 });
    socket.receive("not json");
    assert.deepEqual(seen, [
      ["on", 1],
      ["once", 1],
      ["any", "news", 1],
      ["on", 2],
      ["any", "news", 2],
    ]);
    assert.equal(errors.length, 3);
    gateway.off("news");
    socket.receive({ event: "news", data: 3 });
    assert.equal(seen.length, 6);
    gateway.close();
  });

  it("answers server calls with the first listener's result, its error, or no-handler", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    gateway.on("double", async (n) => n * 2);
    gateway.on("boom", () => {
      throw new Error("boom");
    });
    socket.receive({ event: "double", data: 21, ack: 1 });
    socket.receive({ event: "boom", data: null, ack: 2 });
    socket.receive({ event: "nobody", data: null, ack: 3 });
    gateway.on("big", () => 1n);
    socket.receive({ event: "big", data: null, ack: 4 });
    await tick();
    const answers = socket.sent.sort((a, b) => a.id - b.id);
    assert.deepEqual(answers, [
      { event: "$ack", id: 1, data: 42 },
      { event: "$ack", id: 2, error: { message: "boom" } },
      { event: "$ack", id: 3, error: { message: "No handler for server event 'nobody'" } },
      {
        event: "$ack",
        id: 4,
        error: {
          message: "Answer is not JSON-serialisable: Do not know how to serialize a BigInt",
        },
      },
    ]);
    gateway.close();
  });

  it("answers the gateway's heartbeat", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    socket.receive({ event: "heartbeat", data: null });
    assert.deepEqual(socket.sent, [{ event: "heartbeat", data: null }]);
    gateway.close();
  });
});

describe("$gap frames (frames lost between the server's workers)", () => {
  it("takes $gap: the gap event with its reason, counted in gaps, never dispatched", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const events = [];
    gateway.lifecycle.on("gap", (event) => events.push(["gap", event]));
    gateway.lifecycle.on("error", ({ error }) => events.push(["error", error.message]));
    gateway.on("$gap", (data) => events.push(["on", data]));
    gateway.onAny((event, data) => events.push(["any", event, data]));
    assert.equal(gateway.gaps, 0);
    socket.receive({ event: "$gap", data: { reason: "backplane" } });
    socket.receive({ event: "said", data: 1 });
    assert.deepEqual(events, [
      ["gap", { reason: "backplane" }],
      ["any", "said", 1],
    ]);
    assert.equal(gateway.gaps, 1);
    assert.equal(gateway.connected, true);
    assert.deepEqual(socket.sent, []);
    gateway.close();
  });

  it("a $gap without a string reason gives \"unknown\"; gaps outlive a reconnection", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const reasons = [];
    gateway.lifecycle.on("gap", ({ reason }) => reasons.push(reason));
    gateway.onAny((event) => reasons.push(`any ${event}`));
    socket.receive({ event: "$gap" });
    socket.receive({ event: "$gap", data: null });
    socket.receive({ event: "$gap", data: {} });
    socket.receive({ event: "$gap", data: { reason: 7 } });
    socket.receive({ event: "$gap", data: "backplane" });
    socket.receive({ event: "$gap", data: ["backplane"] });
    socket.receive({ event: "$gap", data: { reason: "backplane" }, ack: 1 }); // no call either
    assert.deepEqual(reasons, [...Array(6).fill("unknown"), "backplane"]);
    assert.equal(gateway.gaps, 7);
    assert.deepEqual(socket.sent, []);
    const reconnected = nextLifecycle(gateway, "connect", 1000);
    socket.drop(1006, "");
    await withTimeout(
      (async () => {
        while (FakeSocket.last() === socket) await tick();
      })(),
      1000,
      "reconnection socket",
    );
    FakeSocket.last().open();
    await reconnected;
    assert.equal(gateway.gaps, 7);
    gateway.close();
  });
});

describe("session recovery bookkeeping", () => {
  const ID = `c_${"a".repeat(32)}`;
  const TOKEN = "T".repeat(40) + "_-x";
  const session = (overrides = {}) => ({
    event: "$session",
    data: { id: ID, token: TOKEN, epoch: "e1", offset: "0", recovered: false, reason: null, ...overrides },
  });
  const credential = (id, epoch, offset) => `gatewayasgi.resume.${id}.${TOKEN}.${epoch}.${offset}`;

  /** Drop the current socket and wait for the reconnection's socket to exist (not yet open). */
  async function dropAndReconnect(gateway, code = 1006) {
    const before = FakeSocket.sockets.length;
    FakeSocket.last().drop(code, "");
    await withTimeout(
      (async () => {
        while (FakeSocket.sockets.length === before) await tick();
      })(),
      1000,
      "reconnection socket",
    );
    return FakeSocket.last();
  }

  /** Everything the client reports, in order. */
  function record(gateway) {
    const events = [];
    for (const name of ["connect", "session", "recovery_failed"]) {
      gateway.lifecycle.on(name, (event) => events.push([name, event]));
    }
    gateway.onAny((event, data) => events.push(["any", event, data]));
    return events;
  }

  it("takes $session and offsets, never dispatches $session, resumes with subprotocols", async () => {
    const gateway = client({ protocols: ["v1"] });
    const events = record(gateway);
    const first = await connected(gateway);
    assert.deepEqual(first.protocols, ["v1"]); // nothing to resume yet: only the user's
    assert.equal(gateway.id, undefined);
    first.receive(session());
    assert.equal(gateway.id, ID);
    first.receive({ event: "said", data: 1, offset: "5" });
    first.receive({ event: "said", data: 2, offset: "6" });
    first.receive({ event: "said", data: 3 }); // no offset: the position stays
    assert.deepEqual(events, [
      ["connect", { recovered: false }],
      ["session", { id: ID, recovered: false, reason: null }],
      ["any", "said", 1],
      ["any", "said", 2],
      ["any", "said", 3],
    ]);
    events.length = 0;

    const second = await dropAndReconnect(gateway);
    assert.equal(second.url, "ws://fake/ws"); // the credential is never in the URL
    assert.deepEqual(second.protocols, ["gatewayasgi", credential(ID, "e1", "6"), "v1"]);
    assert.equal(gateway.id, ID); // kept while reconnecting
    second.open();
    // Open, but not ready until its $session: emits wait in the buffer.
    assert.equal(gateway.state, "connecting");
    gateway.emit("hello", 1);
    assert.deepEqual(second.sent, []);
    second.receive(session({ offset: "6", recovered: true }));
    assert.equal(gateway.state, "connected");
    assert.equal(gateway.recovered, true);
    assert.deepEqual(second.sent, [{ event: "hello", data: 1 }]);
    second.receive({ event: "said", data: 4, offset: "7" });
    assert.deepEqual(events, [
      ["session", { id: ID, recovered: true, reason: null }],
      ["connect", { recovered: true }],
      ["any", "said", 4],
    ]);
    const third = await dropAndReconnect(gateway);
    assert.deepEqual(third.protocols, ["gatewayasgi", credential(ID, "e1", "7"), "v1"]);
    gateway.close();
  });

  it("reports a failed resume on connect with its reason, then resumes the new session", async () => {
    const gateway = client();
    const events = record(gateway);
    const first = await connected(gateway);
    first.receive(session({ offset: "3" }));
    const second = await dropAndReconnect(gateway);
    assert.deepEqual(second.protocols, ["gatewayasgi", credential(ID, "e1", "3")]);
    events.length = 0;
    second.open();
    const fresh = `c_${"b".repeat(32)}`;
    second.receive(session({ id: fresh, epoch: "e2", offset: "0", reason: "epoch" }));
    assert.deepEqual(events, [
      ["session", { id: fresh, recovered: false, reason: "epoch" }],
      ["connect", { recovered: false, reason: "epoch" }],
    ]);
    assert.equal(gateway.id, fresh);
    assert.equal(gateway.recovered, false);
    const third = await dropAndReconnect(gateway);
    assert.deepEqual(third.protocols, ["gatewayasgi", credential(fresh, "e2", "0")]);
    gateway.close();
  });

  it("surfaces a later $session with recovered false as recovery_failed and takes its position", async () => {
    const gateway = client();
    const events = record(gateway);
    const first = await connected(gateway);
    first.receive(session());
    await dropAndReconnect(gateway);
    FakeSocket.last().open();
    FakeSocket.last().receive(session({ recovered: true }));
    // The history was trimmed between the check and the replay: a second $session follows.
    FakeSocket.last().receive(session({ offset: "40", reason: "trimmed" }));
    // Later, the history is lost while connected: a new epoch.
    FakeSocket.last().receive({ event: "said", data: 1, offset: "41" });
    FakeSocket.last().receive(session({ epoch: "e9", offset: "2", reason: "epoch" }));
    assert.deepEqual(
      events.filter(([name]) => name !== "session"),
      [
        ["connect", { recovered: false }],
        ["connect", { recovered: true }],
        ["recovery_failed", { id: ID, reason: "trimmed" }],
        ["any", "said", 1],
        ["recovery_failed", { id: ID, reason: "epoch" }],
      ],
    );
    assert.equal(gateway.connected, true);
    assert.equal(gateway.recovered, false);
    const next = await dropAndReconnect(gateway);
    assert.deepEqual(next.protocols, ["gatewayasgi", credential(ID, "e9", "2")]);
    gateway.close();
  });

  it("recover: false offers nothing but still takes $session frames", async () => {
    const gateway = client({ recover: false, protocols: "v1" });
    const events = record(gateway);
    const first = await connected(gateway);
    first.receive(session({ offset: "1" }));
    first.receive({ event: "said", data: 1, offset: "2" });
    const second = await dropAndReconnect(gateway);
    assert.deepEqual(second.protocols, ["v1"]);
    second.open();
    second.receive(session({ id: `c_${"c".repeat(32)}`, offset: "2" }));
    assert.equal(gateway.id, `c_${"c".repeat(32)}`);
    assert.equal(gateway.recovered, false);
    assert.ok(!events.some(([name, event]) => name === "any" && event.startsWith("$")));
    gateway.close();
  });

  it("close() with 1000 and an app's close forget the session; another code keeps it", async () => {
    const gateway = client();
    const first = await connected(gateway);
    first.receive(session({ offset: "1" }));
    gateway.close();
    assert.deepEqual(first.closedWith, { code: 1000, reason: "" });
    assert.equal(gateway.id, undefined);
    const second = await connected(gateway); // ready on open: no session to wait for
    assert.equal(second.protocols, undefined);
    second.receive(session({ offset: "2" }));
    gateway.close(4000, "later");
    assert.equal(gateway.id, ID);
    gateway.connect();
    await tick();
    assert.deepEqual(FakeSocket.last().protocols, ["gatewayasgi", credential(ID, "e1", "2")]);
    FakeSocket.last().open();
    FakeSocket.last().receive(session({ offset: "2", recovered: true }));
    assert.equal(gateway.recovered, true);
    const closed = nextLifecycle(gateway, "disconnect");
    FakeSocket.last().drop(4001, "kicked"); // the app ended the session
    assert.equal((await closed).willReconnect, false);
    assert.equal(gateway.id, undefined);
  });

  it("gives a socket up with 1001, which keeps the session, when its $session does not come", async () => {
    const gateway = client({ connectTimeout: 30 });
    const first = await connected(gateway);
    first.receive(session());
    const errors = [];
    gateway.lifecycle.on("connect_error", ({ error }) => errors.push(error.message));
    const second = await dropAndReconnect(gateway);
    second.open(); // a gateway redeployed without recovery sends nothing
    const third = await withTimeout(
      (async () => {
        while (FakeSocket.last() === second) await tick();
        return FakeSocket.last();
      })(),
      2000,
      "next attempt",
    );
    assert.deepEqual(errors, ["No $session frame within 30 ms"]);
    assert.deepEqual(second.closedWith, { code: 1001, reason: "" });
    assert.equal(third.protocols, undefined); // forgotten: nothing offered, nothing awaited
    third.open();
    assert.equal(gateway.state, "connected");
    gateway.close();
  });

  it("opens on the first frame when a gateway stops sending $session", async () => {
    const gateway = client();
    const events = record(gateway);
    const first = await connected(gateway);
    first.receive(session());
    const second = await dropAndReconnect(gateway);
    second.open();
    second.receive({ event: "said", data: 1 });
    assert.equal(gateway.state, "connected");
    assert.equal(gateway.id, undefined);
    assert.deepEqual(events.slice(-2), [
      ["connect", { recovered: false }],
      ["any", "said", 1],
    ]);
    gateway.close();
  });

  it("reports a malformed $session and offers no credential that is not a token", async () => {
    const gateway = client();
    const errors = [];
    gateway.lifecycle.on("error", ({ error }) => errors.push(error.message));
    const events = record(gateway);
    const first = await connected(gateway);
    first.receive({ event: "$session", data: { id: 1 } });
    assert.deepEqual(errors, ["Ignored a malformed $session frame"]);
    assert.equal(gateway.id, undefined);
    first.receive(session({ epoch: "e 1" }));
    assert.equal(gateway.id, ID);
    const second = await dropAndReconnect(gateway);
    assert.equal(second.protocols, undefined);
    second.open();
    second.receive(session());
    assert.equal(gateway.connected, true);
    assert.ok(!events.some(([name, event]) => name === "any" && event.startsWith("$")));
    gateway.close();
  });
});

describe("session positions (SessionTracker)", () => {
  const ID = `c_${"d".repeat(32)}`;
  const session = (offset, more = {}) => ({
    event: "$session",
    data: { id: ID, token: "tok", epoch: "e1", offset, recovered: false, reason: null, ...more },
  });
  const frame = (offset) => ({ event: "said", data: null, offset });
  /** The position part of the credential (`undefined` when none would be offered). */
  const position = (tracker) => tracker.credential()?.split(".").at(-1);
  /** A tracker that took `frames` in order. */
  function fed(...frames) {
    const tracker = new SessionTracker(true);
    tracker.begin();
    for (const item of frames) tracker.observe(item);
    return tracker;
  }

  it("plain offsets: the credential names exactly the last offset received", () => {
    const tracker = fed(session("4"), frame("5"), frame("6"), { event: "said", data: 1 });
    assert.equal(tracker.credential(), `gatewayasgi.resume.${ID}.tok.e1.6`);
    assert.deepEqual(tracker.begin(), ["gatewayasgi", `gatewayasgi.resume.${ID}.tok.e1.6`]);
    // Redis stream ids are plain offsets too (no `~`): still one, the last.
    assert.equal(position(fed(session("1733-0"), frame("1733-4"), frame("1734-0"))), "1734-0");
  });

  it("partitioned offsets: the last one per partition, joined by _ in partition order", () => {
    const tracker = fed(session("0~5-0_3~7-1"), frame("3~9-0"), frame("1~2-0"));
    assert.equal(position(tracker), "0~5-0_1~2-0_3~9-0");
    tracker.observe(frame("0~6-0"));
    tracker.observe(frame("1~3-0"));
    tracker.observe({ event: "said", data: 1 }); // no offset: nothing changes
    assert.equal(position(tracker), "0~6-0_1~3-0_3~9-0");
    assert.equal(tracker.credential(), `gatewayasgi.resume.${ID}.tok.e1.0~6-0_1~3-0_3~9-0`);
  });

  it("each $session replaces the whole position, on a new connection or an open one", () => {
    const tracker = fed(session("0~5-0_3~7-1"), frame("3~9-0"), frame("1~2-0"));
    tracker.begin();
    tracker.observe(session("0~8-0_2~4-0", { recovered: true }));
    assert.equal(tracker.recovered, true);
    assert.equal(position(tracker), "0~8-0_2~4-0"); // partitions 1 and 3 are gone
    tracker.observe(frame("2~5-0"));
    // A later $session on the open connection (the history was lost): its position only.
    tracker.observe(session("0~1-0", { epoch: "e2", reason: "epoch" }));
    assert.equal(tracker.credential(), `gatewayasgi.resume.${ID}.tok.e2.0~1-0`);
    // A malformed one changes nothing.
    const malformed = tracker.observe({ event: "$session", data: { id: 1 } });
    assert.deepEqual(malformed, { kind: "malformed" });
    assert.equal(position(tracker), "0~1-0");
  });

  it("forget() drops the session and every partition's offset", () => {
    const tracker = fed(session("0~5-0_3~7-1"), frame("1~2-0"));
    tracker.forget();
    assert.equal(tracker.id, undefined);
    assert.equal(tracker.credential(), undefined);
    assert.deepEqual(tracker.begin(), []);
    // Frames without a session record offsets, but offer nothing until a $session comes.
    tracker.observe(frame("2~1-0"));
    assert.equal(tracker.credential(), undefined);
    tracker.observe(session("0~9-0"));
    assert.equal(position(tracker), "0~9-0");
  });

  it("keeps at most 32 partitions: from a $session and from frames", () => {
    const many = Array.from({ length: 40 }, (_, p) => `${p}~1-0`);
    const tracker = fed(session(many.join("_")));
    const kept = position(tracker).split("_");
    assert.equal(kept.length, 32);
    assert.deepEqual(new Set(kept), new Set(many.slice(0, 32)));
    tracker.observe(frame("35~2-0")); // a 33rd partition: not kept
    tracker.observe(frame("31~2-0")); // a kept one moves on
    assert.ok(!position(tracker).includes("35~"));
    assert.ok(position(tracker).split("_").includes("31~2-0"));

    const grown = fed(session("0~1-0"));
    for (let p = 1; p < 40; p++) grown.observe(frame(`${p}~1-0`));
    assert.equal(position(grown).split("_").length, 32);
    assert.ok(!position(grown).includes("32~"));
  });

  it("through the client: a reconnection offers every partition's last offset", async () => {
    const gateway = client();
    try {
      const first = await connected(gateway);
      first.receive(session("0~5-0_3~7-1"));
      first.receive(frame("3~9-0"));
      first.receive(frame("1~2-0"));
      FakeSocket.last().drop(1006, "");
      await withTimeout(
        (async () => {
          while (FakeSocket.last() === first) await tick();
        })(),
        1000,
        "reconnection socket",
      );
      assert.deepEqual(FakeSocket.last().protocols, [
        "gatewayasgi",
        `gatewayasgi.resume.${ID}.tok.e1.0~5-0_1~2-0_3~9-0`,
      ]);
    } finally {
      gateway.close(); // a failed assertion must not leave it reconnecting (the run would hang)
    }
  });
});

describe("streams", () => {
  it("sends the request with an id from the acks' counter; break sends $cancel once", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const ack = gateway.emitWithAck("echo", 1);
    const stream = gateway.stream("prompt", { text: "hi" });
    assert.deepEqual(socket.sent, [
      { event: "echo", data: 1, id: 1 },
      { event: "prompt", data: { text: "hi" }, id: 2 },
    ]);
    socket.receive({ event: "echo", data: 1, id: 1 });
    assert.equal(await ack, 1);
    socket.receive({ event: "prompt", data: "a", id: 2, seq: 1 });
    socket.receive({ event: "prompt", data: "b", id: 2, seq: 2 });
    const seen = [];
    for await (const item of stream) {
      seen.push(item);
      if (item === "b") break;
    }
    assert.deepEqual(seen, ["a", "b"]);
    assert.deepEqual(socket.sent.at(-1), { event: "$cancel", data: null, id: 2 });
    // Frames after the cancel (the server's cancelled end) are dropped; no second $cancel.
    socket.receive({ event: "prompt", data: "c", id: 2, seq: 3 });
    socket.receive({ event: "prompt", data: null, id: 2, end: true, cancelled: true });
    stream.cancel();
    await stream.return();
    assert.equal(socket.sent.length, 3);
    assert.equal(await stream.result, undefined);
    assert.equal(stream.cancelled, true);
    gateway.close();
  });

  it("reads the items that came before the end; result resolves when the end arrives", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const stream = gateway.stream("count");
    const waiting = [stream.next(), stream.next()]; // two reads may wait at once
    socket.receive({ event: "count", data: 1, id: 1, seq: 1 });
    socket.receive({ event: "count", data: 2, id: 1, seq: 2 });
    socket.receive({ event: "count", data: 3, id: 1, seq: 3 });
    socket.receive({ event: "count", data: { total: 3 }, id: 1, end: true });
    assert.deepEqual(await stream.result, { total: 3 });
    assert.deepEqual(await Promise.all(waiting), [
      { done: false, value: 1 },
      { done: false, value: 2 },
    ]);
    assert.deepEqual(await stream.next(), { done: false, value: 3 });
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
    await stream.return();
    assert.equal(socket.sent.length, 1, "no $cancel after the end");
    assert.equal(stream.cancelled, false);
    gateway.close();
  });

  it("an error frame (not an item) rejects once after the items; seq makes an item", async () => {
    const gateway = client();
    const socket = await connected(gateway);
    const stream = gateway.stream("gen");
    socket.receive({ event: "error", data: { note: "an item named error" }, id: 1, seq: 1 });
    socket.receive({ event: "error", data: { message: "quota", left: 0 }, id: 1 });
    assert.deepEqual(await stream.next(), { done: false, value: { note: "an item named error" } });
    await assert.rejects(stream.next(), (error) => {
      assert.ok(error instanceof AckError);
      assert.deepEqual([error.event, error.data], ["gen", { message: "quota", left: 0 }]);
      return true;
    });
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
    await assert.rejects(stream.result, AckError);
    gateway.close();
  });

  it("a request still buffered is never sent once cancelled, timed out or aborted", async () => {
    const gateway = client();
    const controller = new AbortController();
    const cancelled = gateway.stream("a");
    const timed = gateway.stream("b", null, { timeout: 5 });
    const aborted = gateway.stream("c", null, { signal: controller.signal });
    const kept = gateway.stream("d");
    assert.equal(gateway.bufferedCount, 4);
    cancelled.cancel();
    await assert.rejects(timed.next(), StreamTimeoutError);
    controller.abort();
    await assert.rejects(aborted.next(), (error) => error.name === "AbortError");
    assert.equal(gateway.bufferedCount, 1);
    const socket = await connected(gateway);
    assert.deepEqual(socket.sent, [{ event: "d", data: null, id: 4 }]);
    kept.cancel();
    assert.deepEqual(socket.sent.at(-1), { event: "$cancel", data: null, id: 4 });
    gateway.close();
  });

  it("a drop fails the streams that went out; one buffered meanwhile goes out on reconnect", async () => {
    const gateway = client();
    const first = await connected(gateway);
    const running = gateway.stream("a");
    const reconnecting = nextLifecycle(gateway, "connecting");
    first.drop(1006, "");
    await assert.rejects(running.next(), (error) => {
      assert.ok(error instanceof DisconnectedError);
      assert.equal(error.terminal, false);
      return true;
    });
    const later = gateway.stream("b");
    await reconnecting;
    await new Promise((done) => setTimeout(done, 5));
    const second = FakeSocket.last();
    second.open();
    assert.deepEqual(second.sent, [{ event: "b", data: null, id: 2 }]);
    second.receive({ event: "b", data: "x", id: 2, seq: 1 });
    assert.deepEqual(await later.next(), { done: false, value: "x" });
    gateway.close();
    await assert.rejects(
      later.next(),
      (error) => error instanceof DisconnectedError && error.terminal,
    );
    await assert.rejects(later.result, DisconnectedError);
  });

  it("fails a request dropped from a full buffer, and one made after close()", async () => {
    const gateway = client({ maxBufferedMessages: 1 });
    const dropped = gateway.stream("a");
    gateway.emit("b");
    await assert.rejects(dropped.next(), BufferFullError);
    gateway.close();
    const late = gateway.stream("c");
    await assert.rejects(late.result, DisconnectedError);
  });

  it("keyed streams: key on the request, $attach with key and after, position, missing", async () => {
    const gateway = client();
    const buffered = gateway.attachStream("chat-0"); // offline: buffered like any request
    const aborted = gateway.attachStream("chat-x", { signal: AbortSignal.abort() });
    await assert.rejects(aborted.next(), (error) => error.name === "AbortError");
    const socket = await connected(gateway);
    const keyed = gateway.stream("story", { n: 3 }, { key: "chat-1" });
    const attached = gateway.attachStream("chat-1", { after: 4 });
    assert.deepEqual(socket.sent, [
      { event: "$attach", data: null, id: 1, key: "chat-0", after: 0 },
      { event: "story", data: { n: 3 }, id: 3, key: "chat-1" },
      { event: "$attach", data: null, id: 4, key: "chat-1", after: 4 },
    ]);
    assert.deepEqual([keyed.key, attached.key, attached.event], ["chat-1", "chat-1", "$attach"]);
    // position: the seq of the last item read (from `after` before the first one).
    assert.equal(attached.position, 4);
    socket.receive({ event: "story", data: "e", id: 4, seq: 5 });
    socket.receive({ event: "story", data: "f", id: 4, seq: 6 });
    assert.equal(attached.position, 4, "not read yet");
    assert.deepEqual(await attached.next(), { done: false, value: "e" });
    assert.equal(attached.position, 5);
    // Cancelling an attachment sends `$cancel` with the attach request's id.
    attached.cancel();
    assert.deepEqual(socket.sent.at(-1), { event: "$cancel", data: null, id: 4 });
    assert.equal(attached.position, 5);
    // An unknown key: the end with `missing`, no item; result null.
    socket.receive({ event: "$attach", data: null, id: 1, end: true, missing: true });
    assert.deepEqual(await buffered.next(), { done: true, value: undefined });
    assert.deepEqual([buffered.missing, await buffered.result, buffered.position], [true, null, 0]);
    assert.equal(keyed.missing, false);
    gateway.close();
  });
});
