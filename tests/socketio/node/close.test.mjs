// The server closes a socket (client.close()): the client is told, does not reconnect by
// itself, may connect again; its other namespaces on the connection are untouched.
import assert from "node:assert/strict";
import { it } from "node:test";

import { MODE, WAIT, connected, next, sleep, upgraded } from "./helpers.mjs";

const AUTH = { auth: { token: "s3cret" } };

const NAME = `client.close() from the server: io server disconnect (${MODE})`;

it(NAME, { timeout: 20000 }, async () => {
  const client = await connected("/", { ...AUTH, multiplex: true });
  const other = await connected("/a", { multiplex: true });
  assert.equal(client.io, other.io);
  await upgraded(client);
  const first = client.id;

  const gone = next(client, "disconnect");
  client.emit("kick");
  const [reason] = await gone;
  assert.equal(reason, "io server disconnect");
  assert.equal(client.active, false, "no reconnection after a server-side close");
  await sleep(300);
  assert.equal(client.connected, false);
  assert.equal(other.connected, true, "the other namespace stays");
  assert.equal((await other.timeout(WAIT).emitWithAck("whoami")).id, other.id);

  // Connecting again opens the namespace anew on the same Engine.IO connection.
  const engine = client.io.engine;
  const again = next(client, "connect");
  client.connect();
  await again;
  assert.equal(client.io.engine, engine);
  assert.notEqual(client.id, first);
  assert.deepEqual(await client.timeout(WAIT).emitWithAck("whoami"), {
    auth: AUTH.auth,
    id: client.id,
  });
});
