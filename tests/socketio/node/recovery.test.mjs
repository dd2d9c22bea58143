// Session recovery: a socket whose connection dropped comes back with the same id, its
// rooms, and the events emitted to it meanwhile, once each and in order.
import assert from "node:assert/strict";
import { it } from "node:test";

import { MODE, WAIT, connected, next, sleep, until, upgraded } from "./helpers.mjs";

it(`recovers the session after the connection drops (${MODE})`, { timeout: 30000 }, async () => {
  const room = `recover-${MODE}`;
  // A fixed reconnection delay, long enough for the server to emit while it is away.
  const client = await connected("/recover", {
    reconnectionDelay: 1500,
    reconnectionDelayMax: 1500,
    randomizationFactor: 0,
  });
  const other = await connected("/recover");
  await Promise.all([upgraded(client), upgraded(other)]);
  assert.equal(client.recovered, false);
  const id = client.id;
  assert.deepEqual(await client.timeout(WAIT).emitWithAck("join", room), { joined: room });
  const said = [];
  client.on("said", (n) => said.push(n));

  const say = async (n) => {
    const answer = await other.timeout(WAIT).emitWithAck("say", { room, n });
    assert.equal(typeof answer.delivered, "number", JSON.stringify(answer));
  };
  await say(0);
  await until(() => said.length === 1, "the live event");

  const disconnected = next(client, "disconnect");
  const reconnected = next(client, "connect", 15000);
  client.io.engine.close(); // the connection drops (not a deliberate disconnect())
  const [reason] = await disconnected;
  assert.equal(reason, "forced close"); // socket.io-client reconnects after it
  assert.equal(client.connected, false);
  // Emitted while the socket is away (the session is still a member of the room).
  const start = Date.now();
  let n = 1;
  while (Date.now() - start < 300) await say(n++), await sleep(50);
  const missed = n - 1;
  assert.equal(client.connected, false, "still away while the server emitted");

  await reconnected;
  assert.equal(client.recovered, true, "socket.recovered");
  assert.equal(client.id, id, "the same socket.id");
  await until(() => said.length === missed + 1, `the ${missed} missed events`);
  await say(n);
  await until(() => said.length === missed + 2, "a live event after the resume");
  await sleep(100);
  assert.deepEqual(
    said,
    Array.from({ length: missed + 2 }, (_, i) => i),
    "each once, in order",
  );
  const me = await client.timeout(WAIT).emitWithAck("whoami");
  assert.deepEqual(me, { id, recovered: true, rooms: [room] });
  await upgraded(client);
});
