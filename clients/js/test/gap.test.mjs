// `$gap`: frames lost between the server's workers, on a gateway without recovery. One worker
// (clients/js/test/gap_app.py under hypercorn) on a redis-server of its own; the test cuts the
// worker's Redis subscriber connection (`CLIENT KILL TYPE pubsub`) under a connected client, which
// must get the `gap` lifecycle event and keep its connection. Every wait is bounded.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";

import {
  REDIS_SERVER,
  WebSocket,
  fastClient,
  nextLifecycle,
  sleep,
  startRedis,
  startServer,
  withTimeout,
} from "./helpers.mjs";

const APP = "clients.js.test.gap_app:app";
const PATH = "/gap";
const WAIT = 10000;
const REDIS_CLI = process.env.REDIS_CLI ?? "redis-cli";

const missing = [REDIS_SERVER, REDIS_CLI].some(
  (binary) => spawnSync(binary, ["--version"]).error?.code === "ENOENT",
);
const HINT = "redis-server or redis-cli not found: install them (apt-get install redis-server)";
if (missing && process.env.CI) throw new Error(`${HINT} (CI is set, so this is a failure)`);

/** A WebSocket class that counts the sockets made and records the event of each frame received. */
function tappedWebSocket(record) {
  return class TappedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      record.sockets += 1;
      this.addEventListener("message", (event) => {
        const data = event.data;
        const text = typeof data === "string" ? data : Buffer.from(data).toString();
        record.frames.push(JSON.parse(text));
      });
    }
  };
}

describe("$gap from a worker whose Redis subscription was cut", { skip: missing && HINT }, () => {
  let redis;
  let worker;
  let gateway;

  before(async () => {
    redis = await startRedis();
    worker = await startServer(undefined, APP, "hypercorn", {
      GATEWAYASGI_TEST_REDIS_URL: redis.url,
    });
  });

  after(async () => {
    gateway?.close();
    await worker?.stop();
    await redis?.stop();
  });

  /** `CLIENT KILL TYPE pubsub` on the test's redis-server: how many connections it killed. */
  function killSubscribers() {
    const output = execFileSync(
      REDIS_CLI,
      ["-h", "127.0.0.1", "-p", String(redis.port), "CLIENT", "KILL", "TYPE", "pubsub"],
      { timeout: 5000 },
    );
    return Number(output.toString().trim());
  }

  /**
   * Ask the worker to publish `relayed` to `room` through Redis until the client gets one (a
   * publish can land before the subscription is back); every try and the whole wait are bounded.
   */
  async function relayed(room, tag) {
    const got = [];
    const listener = (n) => got.push(n);
    gateway.on("relayed", listener);
    try {
      await withTimeout(
        (async () => {
          for (let n = 0; got.length === 0; n += 1) {
            const reply = await gateway.emitWithAck("relay", { room, n: `${tag}-${n}` });
            assert.equal(reply, "published");
            for (let waited = 0; got.length === 0 && waited < 500; waited += 10) await sleep(10);
          }
        })(),
        WAIT,
        `a frame relayed through Redis (${tag})`,
      );
    } finally {
      gateway.off("relayed", listener);
    }
    return got[0];
  }

  it("the client gets the gap event (backplane), keeps its connection, and room frames flow again", async () => {
    const record = { sockets: 0, frames: [] };
    gateway = fastClient(`ws://127.0.0.1:${worker.port}${PATH}`, WAIT, {
      WebSocket: tappedWebSocket(record),
      connectTimeout: WAIT,
    });
    const seen = [];
    for (const name of ["connect", "disconnect", "gap"]) {
      gateway.lifecycle.on(name, (event) => seen.push([name, event]));
    }
    const dispatched = [];
    gateway.on("$gap", (data) => dispatched.push(["on", data]));
    gateway.onAny((event) => {
      if (event.startsWith("$")) dispatched.push(["any", event]);
    });

    await withTimeout(gateway.connect(), WAIT, "connect");
    assert.deepEqual(await gateway.emitWithAck("join", "lobby"), { joined: "lobby" });
    // The room's frames come over the worker's Redis subscription before the cut.
    assert.match(await relayed("lobby", "before"), /^before-/);
    assert.equal(gateway.gaps, 0);

    const gap = nextLifecycle(gateway, "gap", WAIT);
    const killed = killSubscribers();
    assert.ok(killed >= 1, `CLIENT KILL TYPE pubsub killed ${killed} connections`);
    assert.deepEqual(await gap, { reason: "backplane" });
    assert.equal(gateway.gaps, 1);
    assert.equal(gateway.state, "connected");

    // The subscription is back: a frame published to the room reaches the client again.
    assert.match(await relayed("lobby", "after"), /^after-/);
    await sleep(200); // a second `$gap` for the same cut would be a duplicate
    assert.equal(gateway.gaps, 1);
    assert.equal(gateway.state, "connected");
    assert.equal(record.sockets, 1); // the same WebSocket all along
    assert.deepEqual(
      seen.filter(([name]) => name !== "connect"),
      [["gap", { reason: "backplane" }]],
    );
    assert.deepEqual(dispatched, []);
    const gaps = record.frames.filter((frame) => frame.event === "$gap");
    assert.deepEqual(gaps, [{ event: "$gap", data: { reason: "backplane" } }]);
  });
});
