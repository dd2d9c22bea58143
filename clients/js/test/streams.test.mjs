// `client.stream()` against a real gateway (test/server_app.py under hypercorn; its stream
// handlers are generators): items in order, the end's data, cancelling by leaving the loop, by
// an AbortSignal and by a timeout (the server's generator is closed: its `finally` ran), error
// frames, a dropped connection, the concurrency limit, and MessagePack. Keyed streams
// (`stream(..., { key })`, `attachStream`): re-attaching after a close or a reconnection, from a
// position, an unknown key, the gateway's refusal (`can_attach`), a cancel by the attached client.
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

/** The items `story` yields for `tag`, from `from` to `n - 1`. */
const storyItems = (tag, n, from = 0) =>
  Array.from({ length: n - from }, (_, i) => `${tag}-${from + i}`);

describe("keyed streams against a gatewayasgi server", () => {
  it("outlive close(): another client reads every item once, in order, then the end", async () => {
    const first = await connected();
    const tag = newTag("story");
    const key = `chat-${tag}`;
    const n = 40; // 2 s of items: the stream still runs when the second client attaches
    const stream = first.stream("story", { tag, n, every: 0.05 }, { key });
    assert.equal(stream.key, key);
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await withTimeout(stream.next(), WAIT, `item ${i}`), {
        done: false,
        value: `${tag}-${i}`,
      });
    }
    assert.equal(stream.position, 3);
    first.close();
    await assert.rejects(collect(stream), DisconnectedError);
    await assert.rejects(stream.result, DisconnectedError);

    const second = await connected();
    // The close did not end it: the generator runs on.
    assert.ok(!(await second.emitWithAck("closed_streams")).includes(tag), "still running");
    const attached = second.attachStream(key, { timeout: WAIT });
    assert.ok(attached instanceof GatewayStream);
    assert.deepEqual([attached.event, attached.key], ["$attach", key]);
    // The kept items, then the live ones: each once, in order, then the end.
    assert.deepEqual(await collect(attached), storyItems(tag, n));
    assert.deepEqual(await withTimeout(attached.result, WAIT, "result"), { done: tag });
    assert.deepEqual([attached.position, attached.missing, attached.cancelled], [n, false, false]);

    // after: N: only the items after it (a finished stream answers during the gateway's grace).
    const late = second.attachStream(key, { after: n - 3 });
    assert.deepEqual(await collect(late), storyItems(tag, n, n - 3));
    assert.deepEqual(await late.result, { done: tag });
    assert.equal(late.position, n);
  });

  it("after a reconnection, the same client goes on from stream.position", async () => {
    const gateway = await connected();
    const tag = newTag("story");
    const key = `chat-${tag}`;
    const n = 30;
    const stream = gateway.stream("story", { tag, n, every: 0.03 }, { key });
    const read = [];
    for (let i = 0; i < 5; i++) read.push((await withTimeout(stream.next(), WAIT, "item")).value);
    const reconnected = nextLifecycle(gateway, "connect", WAIT);
    gateway.emit("drop"); // the server closes the connection (1012): the client reconnects
    await assert.rejects(
      withTimeout(
        (async () => {
          for await (const item of stream) read.push(item); // the items that came before
        })(),
        WAIT,
        "the dropped stream",
      ),
      (error) => error instanceof DisconnectedError && !error.terminal,
    );
    assert.equal(stream.position, read.length);
    await reconnected;
    const rest = gateway.attachStream(key, { after: stream.position });
    assert.ok(rest.position === read.length && read.length >= 5);
    read.push(...(await collect(rest)));
    assert.deepEqual(read, storyItems(tag, n));
    assert.deepEqual(await rest.result, { done: tag });
  });

  it("an unknown key ends with missing; can_attach's refusal rejects with AckError", async () => {
    const gateway = await connected();
    const missing = gateway.attachStream("chat-nothing-here", { after: 3 });
    assert.deepEqual(await collect(missing), []);
    assert.equal(missing.missing, true);
    assert.equal(await missing.result, null);
    assert.equal(missing.cancelled, false);

    // The gateway's can_attach refuses keys that do not start with "chat-".
    const tag = newTag("secret");
    const started = gateway.stream("story", { tag, n: 50, every: 0.05 }, { key: tag });
    assert.deepEqual(await withTimeout(started.next(), WAIT, "first"), {
      done: false,
      value: `${tag}-0`,
    });
    const refused = gateway.attachStream(tag);
    await assert.rejects(collect(refused), (error) => {
      assert.ok(error instanceof AckError);
      assert.equal(error.event, "$attach");
      assert.deepEqual(error.data, { message: "Attaching to this stream is not allowed" });
      return true;
    });
    await assert.rejects(refused.result, AckError);
    assert.equal(refused.missing, false);
    // A key the server cannot take rejects too; the connection and the first stream go on.
    await assert.rejects(collect(gateway.attachStream("x".repeat(257))), (error) => {
      assert.ok(error instanceof AckError);
      assert.match(error.data.message, /^Stream key must be/);
      return true;
    });
    assert.equal((await withTimeout(started.next(), WAIT, "second")).value, `${tag}-1`);
    started.cancel();
    await generatorClosed(gateway, tag);
  });

  it("an attached client cancels the keyed stream: the server closes the generator", async () => {
    const owner = await connected();
    const reader = await connected();
    const tag = newTag("story");
    const key = `chat-${tag}`;
    const started = owner.stream("story", { tag, n: 1000, every: 0.02 }, { key });
    await withTimeout(started.next(), WAIT, "the owner's first item");
    const attached = reader.attachStream(key);
    const seen = [];
    await withTimeout(
      (async () => {
        for await (const item of attached) {
          seen.push(item);
          if (seen.length === 3) break; // `$cancel` with the attach request's id
        }
      })(),
      WAIT,
      "three attached items",
    );
    assert.deepEqual(seen, storyItems(tag, 3));
    assert.equal(attached.cancelled, true);
    await generatorClosed(reader, tag);
    // The owner gets the cancelled end: its loop ends after the items it had.
    await withTimeout(
      (async () => {
        for await (const _ of started);
      })(),
      WAIT,
      "the owner's end",
    );
    assert.equal(started.cancelled, true);
  });

  it("wireProtocol msgpack: a keyed stream and its re-attachment", async () => {
    const options = { wireProtocol: "msgpack" };
    const first = await connected(options, msgpackServer.url);
    const tag = newTag("story");
    const key = `chat-${tag}`;
    const stream = first.stream("story", { tag, n: 10, every: 0.05 }, { key });
    await withTimeout(stream.next(), WAIT, "first");
    first.close();
    const second = await connected(options, msgpackServer.url);
    const attached = second.attachStream(key, { after: 1 });
    assert.deepEqual(await collect(attached), storyItems(tag, 10, 1));
    assert.deepEqual(await attached.result, { done: tag });
    const missing = second.attachStream("chat-none");
    assert.deepEqual(await collect(missing), []);
    assert.equal(missing.missing, true);
  });
});
