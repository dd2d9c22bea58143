// `client.stream()` against a real gateway (test/server_app.py under hypercorn; its stream
// handlers are generators): items in order, the end's data, cancelling by leaving the loop, by
// an AbortSignal and by a timeout (the server's generator is closed: its `finally` ran), error
// frames, a dropped connection, the concurrency limit, and MessagePack.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AckError,
  DisconnectedError,
  GatewayClient,
  GatewayStream,
  StreamTimeoutError,
} from "../dist/index.js";
import { WebSocket, nextLifecycle, sleep, startServer, withTimeout } from "./helpers.mjs";

const WAIT = 5000;

let server;
let msgpackServer;
const clients = [];

function client(options = {}, url = server.url) {
  const gateway = new GatewayClient(url, {
    WebSocket,
    auth: { token: "good" },
    reconnectDelay: 50,
    reconnectDelayMax: 400,
    ackTimeout: WAIT,
    ...options,
  });
  clients.push(gateway);
  return gateway;
}

async function connected(options, url) {
  const gateway = client(options, url);
  await withTimeout(gateway.connect(), WAIT, "connect");
  return gateway;
}

/** Every item of `stream`, within `ms`. */
function collect(stream, ms = WAIT) {
  return withTimeout(
    (async () => {
      const items = [];
      for await (const item of stream) items.push(item);
      return items;
    })(),
    ms,
    `stream ${stream.event}`,
  );
}

let tags = 0;
const newTag = (what) => `${what}-${++tags}`;

/** Resolves once the server has closed the `ticks` generator tagged `tag` (its `finally` ran). */
async function generatorClosed(gateway, tag) {
  await withTimeout(
    (async () => {
      while (!(await gateway.emitWithAck("closed_streams")).includes(tag)) await sleep(20);
    })(),
    WAIT,
    `the server closing the generator of ${tag}`,
  );
}

before(async () => {
  [server, msgpackServer] = await Promise.all([
    startServer(),
    startServer(undefined, "clients.js.test.msgpack_app:app"),
  ]);
});

after(async () => {
  for (const gateway of clients) gateway.close();
  await Promise.all([server?.stop(), msgpackServer?.stop()]);
});

describe("client.stream against a gatewayasgi server", () => {
  it("yields the items in order, then resolves result with the StreamEnd value", async () => {
    const gateway = await connected();
    const stream = gateway.stream("prompt", { text: "hi", n: 4 });
    assert.ok(stream instanceof GatewayStream);
    assert.deepEqual(await collect(stream), [
      { delta: "hi-0" },
      { delta: "hi-1" },
      { delta: "hi-2" },
      { delta: "hi-3" },
    ]);
    assert.deepEqual(await withTimeout(stream.result, WAIT, "result"), { tokens: 4 });
    assert.equal(stream.cancelled, false);
    // A def generator; no StreamEnd: the end's data is null.
    const numbers = gateway.stream("numbers", 50);
    assert.deepEqual(
      await collect(numbers),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.equal(await numbers.result, null);
  });

  it("shares the id counter with emitWithAck; calls and streams run side by side", async () => {
    const gateway = await connected();
    const slow = gateway.stream("ticks", { tag: newTag("side"), every: 0.01 });
    const echoed = gateway.emitWithAck("echo", "during");
    const fast = gateway.stream("prompt", { text: "b", n: 2 });
    assert.equal(fast.id, slow.id + 2);
    assert.equal(await withTimeout(echoed, WAIT, "echo"), "during");
    assert.deepEqual(await collect(fast), [{ delta: "b-0" }, { delta: "b-1" }]);
    const first = [];
    await withTimeout(
      (async () => {
        for await (const n of slow) {
          first.push(n);
          if (first.length === 5) break;
        }
      })(),
      WAIT,
      "five items",
    );
    assert.deepEqual(first, [0, 1, 2, 3, 4]);
  });

  it("leaving the loop with break cancels the stream: the server closes the generator", async () => {
    const gateway = await connected();
    const tag = newTag("break");
    const stream = gateway.stream("ticks", { tag });
    const seen = [];
    await withTimeout(
      (async () => {
        for await (const n of stream) {
          seen.push(n);
          if (n === 2) break;
        }
      })(),
      WAIT,
      "three items",
    );
    assert.deepEqual(seen, [0, 1, 2]);
    await generatorClosed(gateway, tag);
    assert.equal(stream.cancelled, true);
    assert.equal(await stream.result, undefined);
    // The stream is over on the client: a second loop reads nothing; the connection goes on.
    assert.deepEqual(await collect(stream), []);
    assert.equal(await gateway.emitWithAck("echo", 1), 1);
  });

  it("an AbortSignal cancels it: the loop and result reject with the reason", async () => {
    const gateway = await connected();
    const tag = newTag("abort");
    const controller = new AbortController();
    const stream = gateway.stream("ticks", { tag }, { signal: controller.signal });
    const seen = [];
    await assert.rejects(
      withTimeout(
        (async () => {
          for await (const n of stream) {
            seen.push(n);
            if (n === 1) setTimeout(() => controller.abort(), 0);
          }
        })(),
        WAIT,
        "aborted loop",
      ),
      (error) => error.name === "AbortError",
    );
    assert.ok(seen.length >= 2, `${seen}`);
    await assert.rejects(stream.result, (error) => error.name === "AbortError");
    await generatorClosed(gateway, tag);
    assert.equal(stream.cancelled, true);

    // A signal aborted already: nothing is sent, the stream fails at once with its reason.
    const reason = new Error("changed my mind");
    const signal = AbortSignal.abort(reason);
    const never = gateway.stream("ticks", { tag: newTag("never") }, { signal });
    await assert.rejects(never.next(), (error) => error === reason);
    await assert.rejects(never.result, (error) => error === reason);
  });

  it("cancel() stops it between items", async () => {
    const gateway = await connected();
    const tag = newTag("cancel");
    const stream = gateway.stream("ticks", { tag });
    assert.deepEqual(await withTimeout(stream.next(), WAIT, "first"), { done: false, value: 0 });
    stream.cancel();
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
    await generatorClosed(gateway, tag);
  });

  it("a per-item timeout cancels it and rejects with StreamTimeoutError", async () => {
    const gateway = await connected();
    const tag = newTag("timeout");
    const stream = gateway.stream("ticks", { tag, every: 30 }, { timeout: 300 });
    assert.deepEqual(await withTimeout(stream.next(), WAIT, "first"), { done: false, value: 0 });
    const started = Date.now();
    await assert.rejects(withTimeout(stream.next(), WAIT, "timeout"), (error) => {
      assert.ok(error instanceof StreamTimeoutError);
      assert.equal(error.timeout, 300);
      return true;
    });
    assert.ok(Date.now() - started >= 250, "not before its timeout");
    await assert.rejects(stream.result, StreamTimeoutError);
    await generatorClosed(gateway, tag);
  });

  it("an error frame rejects with AckError after the items before it", async () => {
    const gateway = await connected();
    const stream = gateway.stream("broken");
    const seen = [];
    await assert.rejects(
      withTimeout(
        (async () => {
          for await (const n of stream) seen.push(n);
        })(),
        WAIT,
        "broken stream",
      ),
      (error) => {
        assert.ok(error instanceof AckError);
        assert.equal(error.event, "broken");
        assert.deepEqual(error.data, { message: "no more tokens", left: 0 });
        return true;
      },
    );
    assert.deepEqual(seen, [1]);
    await assert.rejects(stream.result, AckError);
    // Validation runs before the first item: its error frame ends the stream too.
    await assert.rejects(collect(gateway.stream("prompt", { n: 1 })), (error) => {
      assert.ok(error instanceof AckError);
      assert.deepEqual(
        error.data.errors.map((entry) => entry.loc),
        [["text"]],
      );
      return true;
    });
    assert.equal(await gateway.emitWithAck("echo", "still open"), "still open");
  });

  it("a dropped connection fails it with DisconnectedError; the server closed the generator", async () => {
    const gateway = await connected();
    const tag = newTag("drop");
    const stream = gateway.stream("ticks", { tag });
    assert.deepEqual(await withTimeout(stream.next(), WAIT, "first"), { done: false, value: 0 });
    const reconnected = nextLifecycle(gateway, "connect", WAIT);
    gateway.emit("drop");
    await assert.rejects(
      collect(stream),
      (error) => error instanceof DisconnectedError && error.code === 1012 && !error.terminal,
    );
    await assert.rejects(stream.result, DisconnectedError);
    await reconnected;
    await generatorClosed(gateway, tag);
  });

  it("a request made offline waits in the send buffer and streams once connected", async () => {
    const gateway = client();
    const stream = gateway.stream("prompt", { text: "later", n: 2 });
    assert.equal(gateway.bufferedCount, 1);
    gateway.connect();
    assert.deepEqual(await collect(stream), [{ delta: "later-0" }, { delta: "later-1" }]);
    assert.deepEqual(await stream.result, { tokens: 2 });
  });

  it("one stream past the server's limit (8 at once) rejects with AckError", async () => {
    const gateway = await connected();
    const running = Array.from({ length: 8 }, () =>
      gateway.stream("ticks", { tag: newTag("limit") }),
    );
    // Each has started (its first item came) before the ninth is asked for.
    for (const stream of running) await withTimeout(stream.next(), WAIT, "first item");
    await assert.rejects(collect(gateway.stream("prompt", { text: "x" })), (error) => {
      assert.ok(error instanceof AckError);
      assert.match(error.data.message, /Too many streams: at most 8/);
      return true;
    });
    for (const stream of running) stream.cancel();
    // Their slots free up as the server closes them: a new stream runs.
    await withTimeout(
      (async () => {
        for (;;) {
          try {
            return await collect(gateway.stream("prompt", { text: "y", n: 1 }));
          } catch (error) {
            if (!(error instanceof AckError)) throw error;
            await sleep(20);
          }
        }
      })(),
      WAIT,
      "a stream after the others were cancelled",
    ).then((items) => assert.deepEqual(items, [{ delta: "y-0" }]));
  });

  it("wireProtocol msgpack: bytes items, the end's data, a cancel", async () => {
    const gateway = await connected({ wireProtocol: "msgpack" }, msgpackServer.url);
    const stream = gateway.stream("blobs", 3);
    assert.deepEqual(await collect(stream), [
      new Uint8Array([0]),
      new Uint8Array([0, 1]),
      new Uint8Array([0, 1, 2]),
    ]);
    assert.deepEqual(await stream.result, { count: 3 });
    const tag = newTag("msgpack");
    await withTimeout(
      (async () => {
        for await (const n of gateway.stream("ticks", { tag })) if (n === 1) break;
      })(),
      WAIT,
      "two items",
    );
    await generatorClosed(gateway, tag);
  });
});
