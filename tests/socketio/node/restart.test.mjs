// A socket reconnects by itself after the server stops and starts again on the same port.
import assert from "node:assert/strict";
import { it } from "node:test";

import { MODE, WAIT, connected, control, next, upgraded } from "./helpers.mjs";

const AUTH = { auth: { token: "s3cret" } };

it(`reconnects by itself after a server restart (${MODE})`, { timeout: 60000 }, async () => {
  const client = await connected("/", AUTH);
  const a = await connected("/a", { multiplex: false });
  // A pending long-poll would hold the server's shutdown; after the upgrade there is none.
  await Promise.all([upgraded(client), upgraded(a)]);
  const before = await client.timeout(WAIT).emitWithAck("whoami");
  assert.equal(before.id, client.id);

  const disconnected = next(client, "disconnect", 20000);
  const failedAttempt = next(client.io, "reconnect_error", 20000);
  await control("stop");
  const [reason] = await disconnected;
  assert.ok(
    ["transport close", "transport error", "ping timeout"].includes(reason),
    `disconnect reason ${reason}`,
  );
  assert.equal(client.active, true, "it will reconnect by itself");
  await failedAttempt; // the server is down: at least one attempt fails

  const reconnected = next(client, "connect", 20000);
  const reconnectedA = next(a, "connect", 20000);
  await control("start");
  await Promise.all([reconnected, reconnectedA]);
  assert.equal(client.connected, true);
  assert.ok(!client.recovered, "no recovery on this namespace");
  const after = await client.timeout(WAIT).emitWithAck("whoami");
  assert.deepEqual(after, { auth: AUTH.auth, id: client.id });
  assert.notEqual(after.id, before.id, "a new server: a new connection");
  assert.deepEqual(await client.timeout(WAIT).emitWithAck("add", { x: 40, y: 2 }), { sum: 42 });
  assert.deepEqual((await a.timeout(WAIT).emitWithAck("whoami")).id, a.id);
  await Promise.all([upgraded(client), upgraded(a)]);
});
