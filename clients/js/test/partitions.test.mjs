// Session recovery with a history split into partitions (`Recovery(partitions=4)`): the client
// against two worker processes (tests/apps/recovery_app.py's `/parts` gateway under hypercorn) on
// a redis-server of its own, through a proxy that cuts the client's connection mid-burst and sends
// the reconnection to the other worker. Every wait is bounded.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";

import {
  CutProxy,
  PYTHON,
  REDIS_SERVER,
  ROOT,
  WebSocket,
  fastClient,
  nextLifecycle,
  sleep,
  startRedis,
  startServer,
  withTimeout,
} from "./helpers.mjs";

const APP = "tests.apps.recovery_app:app";
const PATH = "/parts";
const WAIT = 10000;
const ROUNDS = 150;
/** The `mixed` frame a member gets per round: one per room, to all its rooms, to all, to it. */
const PER_ROUND = 3 + 3;

const missing = spawnSync(REDIS_SERVER, ["--version"]).error?.code === "ENOENT";
const HINT = "redis-server not found: install it (apt-get install redis-server) to run this test";
if (missing && process.env.CI) throw new Error(`${HINT} (CI is set, so this is a failure)`);

/**
 * Room names in partitions 1, 2 and 3 (none in the shared partition 0), and the partition count,
 * as the server computes them (CRC-32 of the name, modulo the count).
 */
function roomsInPartitions() {
  const script = [
    "import json",
    "from gatewayasgi.stores._redis_partitions import partition_of_name",
    "from tests.apps.recovery_app import PARTITIONS",
    "found = {}",
    "for n in range(1000):",
    "    part = partition_of_name(f'room-{n}', PARTITIONS)",
    "    found.setdefault(part, f'room-{n}')",
    "print(json.dumps({'partitions': PARTITIONS, 'rooms': {p: found[p] for p in (1, 2, 3)}}))",
  ].join("\n");
  const output = execFileSync(PYTHON, ["-c", script], { cwd: ROOT, timeout: 20000 });
  return JSON.parse(output.toString());
}

/** A WebSocket class that records, per socket, the subprotocols offered and each frame received. */
function tappedWebSocket(sockets) {
  return class TappedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      const record = { protocols, frames: [] };
      sockets.push(record);
      this.addEventListener("message", (event) => {
        const data = event.data;
        const text = typeof data === "string" ? data : Buffer.from(data).toString();
        record.frames.push(JSON.parse(text));
      });
    }
  };
}

/** What a resume should offer after `frames`: per `<p>~` prefix the last offset, joined by `_`. */
function expectedPosition(frames) {
  const kept = new Map();
  for (const frame of frames) {
    if (frame.event === "$session") {
      kept.clear();
      for (const item of frame.data.offset.split("_")) kept.set(item.split("~")[0], item);
    } else if (frame.offset !== undefined) {
      kept.set(frame.offset.split("~")[0], frame.offset);
    }
  }
  return [...kept.keys()].sort().map((key) => kept.get(key)).join("_");
}

/** A Redis stream id (`<ms>-<seq>`) as a number pair that compares. */
function streamId(text) {
  const [ms, seq] = text.split("-").map(BigInt);
  return { ms, seq };
}
const later = (a, b) => a.ms > b.ms || (a.ms === b.ms && a.seq > b.seq);

/** Poll `predicate` until true, within `ms`. */
async function until(predicate, ms, label) {
  await withTimeout(
    (async () => {
      while (!predicate()) await sleep(10);
    })(),
    ms,
    label,
  );
}

describe("a partitioned history on redis-server, two workers", { skip: missing && HINT }, () => {
  let redis;
  let proxy;
  const workers = [];
  const clients = [];
  let rooms;
  let partitions;

  before(async () => {
    ({ partitions, rooms } = roomsInPartitions());
    redis = await startRedis();
    const started = await Promise.all(
      ["A", "B"].map((name) =>
        startServer(undefined, APP, "hypercorn", {
          GATEWAYASGI_TEST_REDIS_URL: redis.url,
          GATEWAYASGI_TEST_NODE: name,
        }),
      ),
    );
    workers.push(...started);
    proxy = await new CutProxy(workers[0].port).start();
  });

  after(async () => {
    for (const gateway of clients) gateway.close();
    await proxy?.close();
    await Promise.all(workers.map((worker) => worker.stop()));
    await redis?.stop();
  });

  function client(url, options = {}) {
    const gateway = fastClient(url, WAIT, { connectTimeout: WAIT, ...options });
    clients.push(gateway);
    return gateway;
  }

  it("a member of rooms in three partitions, cut mid-burst, resumes on the other worker: every frame once, each target's in order", async () => {
    const [, b] = workers;
    const ROOMS = Object.values(rooms);
    assert.equal(partitions, 4);
    assert.equal(new Set(ROOMS).size, 3);

    const sender = client(`ws://127.0.0.1:${b.port}${PATH}`);
    await withTimeout(sender.connect(), WAIT, "sender connect");
    // Frames from before the member's session: never replayed to it.
    assert.equal(await sender.emitWithAck("mixed", { rooms: ROOMS, count: 2 }), "done");

    const sockets = [];
    const member = client(`ws://127.0.0.1:${proxy.port}${PATH}`, {
      WebSocket: tappedWebSocket(sockets),
    });
    const opened = nextLifecycle(member, "session", WAIT);
    await withTimeout(member.connect(), WAIT, "member connect");
    const first = await opened;
    assert.equal(first.recovered, false);
    const id = member.id;
    assert.equal(id, first.id);
    for (const room of ROOMS) {
      assert.deepEqual(await member.emitWithAck("join", room), { joined: room, node: "A" });
    }
    // Both workers deliver every partition: a live round trip first.
    const said = new Promise((done) => member.once("said", done));
    await sender.emitWithAck("say", { room: ROOMS[0], n: "hello" });
    assert.equal(await withTimeout(said, WAIT, "a live frame"), "hello");

    // The burst; the member's connection is cut at its 40th frame, its next one goes to B.
    const received = [];
    const reconnected = nextLifecycle(member, "connect", WAIT);
    let cut = 0;
    member.on("mixed", (data) => {
      received.push(data);
      if (received.length === 40) {
        proxy.targetPort = b.port;
        cut = proxy.cut();
      }
    });
    const burst = sender.emitWithAck("mixed", { rooms: ROOMS, count: ROUNDS, client: id });
    assert.deepEqual(await reconnected, { recovered: true });
    assert.equal(cut, 1);
    assert.equal(await withTimeout(burst, WAIT, "the burst's reply"), "done");
    await until(() => received.length >= ROUNDS * PER_ROUND, WAIT, "every frame of the burst");
    await sleep(300); // anything more would be a frame twice (or from before the session)
    assert.equal(received.length, ROUNDS * PER_ROUND);

    // Each target's frames once, in order.
    const byTarget = new Map();
    for (const { to, n } of received) byTarget.set(to, [...(byTarget.get(to) ?? []), n]);
    assert.deepEqual([...byTarget.keys()].sort(), [...ROOMS, "all", "me", "rooms"].sort());
    const rounds = Array.from({ length: ROUNDS }, (_, n) => n);
    for (const [target, numbers] of byTarget) assert.deepEqual(numbers, rounds, target);

    assert.equal(member.recovered, true);
    assert.equal(member.id, id);
    assert.deepEqual(await member.emitWithAck("node"), {
      node: "B",
      id,
      rooms: [...ROOMS].sort(),
    });

    // What went over the wire: two sockets (A, then B through the same proxy).
    assert.equal(sockets.length, 2);
    const [onA, onB] = sockets;
    assert.deepEqual(onA.protocols, undefined); // nothing to resume on the first connection
    // The credential: the last offset of each partition received on A, sorted by partition.
    const [protocol, credential] = onB.protocols;
    assert.equal(protocol, "gatewayasgi");
    const position = credential.split(".").at(-1);
    assert.ok(credential.startsWith(`gatewayasgi.resume.${id}.`), credential);
    assert.equal(position, expectedPosition(onA.frames));
    const keys = position.split("_").map((item) => item.split("~")[0]);
    assert.deepEqual(keys, [...new Set(keys)].sort());
    // The shared partition always (the first `$session` names it); a room's once a frame of it
    // came (the partitions' frames arrive in no order among them, so not every room's may have).
    assert.ok(keys.includes("0"), position);
    assert.ok(keys.every((key) => ["0", "1", "2", "3"].includes(key)), position);
    assert.ok(keys.length >= 2, position);
    // B's `$session` resumed from there: the offered offsets, and where the session began in the
    // followed partitions the client had no frame of (all four here: 0 and its rooms').
    const resumed = onB.frames.find((frame) => frame.event === "$session");
    assert.equal(resumed.data.recovered, true);
    assert.equal(resumed.data.id, id);
    const items = resumed.data.offset.split("_");
    assert.deepEqual(items.map((item) => item.split("~")[0]), ["0", "1", "2", "3"]);
    for (const item of position.split("_")) assert.ok(items.includes(item), resumed.data.offset);

    // Offsets: `<p>~<stream id>`, a room's in its own partition, to several rooms or to all in
    // the shared one, the member's own in one; each partition's increasing across both sockets.
    const mixed = [...onA.frames, ...onB.frames].filter((frame) => frame.event === "mixed");
    assert.equal(mixed.length, ROUNDS * PER_ROUND);
    const partitionOf = (frame) => frame.offset.split("~")[0];
    for (const [part, room] of Object.entries(rooms)) {
      const parts = new Set(mixed.filter((f) => f.data.to === room).map(partitionOf));
      assert.deepEqual([...parts], [part], room);
    }
    for (const target of ["rooms", "all"]) {
      const parts = new Set(mixed.filter((f) => f.data.to === target).map(partitionOf));
      assert.deepEqual([...parts], ["0"], target);
    }
    assert.equal(new Set(mixed.filter((f) => f.data.to === "me").map(partitionOf)).size, 1);
    const last = new Map();
    for (const frame of mixed) {
      const [part, rest] = frame.offset.split("~");
      const offset = streamId(rest);
      if (last.has(part)) assert.ok(later(offset, last.get(part)), `offset ${frame.offset}`);
      last.set(part, offset);
    }
  });
});
