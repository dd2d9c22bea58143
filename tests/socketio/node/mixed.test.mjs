// A socket.io-client socket and a native-JSON WebSocket in one room see each other.
import assert from "node:assert/strict";
import { it } from "node:test";

import { MODE, WAIT, connected, native, next, upgraded } from "./helpers.mjs";

const NAME = `a Socket.IO socket and a native WebSocket share a room (${MODE})`;

it(NAME, { timeout: 20000 }, async () => {
  const room = `lobby-${MODE}`;
  const sio = await connected("/mixed");
  const ws = await native("/mixed");
  assert.deepEqual(await sio.timeout(WAIT).emitWithAck("join", room), { joined: room });
  ws.send({ event: "join", data: room, id: 1 });
  assert.deepEqual(await ws.next((frame) => frame.id === 1, "join reply"), {
    event: "join",
    data: { joined: room },
    id: 1,
  });

  // native -> room: both get it, each in its own format
  const atSio = next(sio, "said");
  ws.send({ event: "say", data: { room, from: "native", text: "hello from ws" }, id: 2 });
  const reply = await ws.next((frame) => frame.id === 2, "say reply");
  assert.deepEqual(reply.data, { delivered: 2 });
  const fromNative = { from: "native", text: "hello from ws" };
  assert.deepEqual(await atSio, [fromNative]);
  const echoed = await ws.next((frame) => frame.event === "said", "said at native");
  assert.deepEqual(echoed, { event: "said", data: fromNative });

  // socket.io -> room
  const back = next(sio, "said");
  const answer = await sio
    .timeout(WAIT)
    .emitWithAck("say", { room, from: "sio", text: "hello from socket.io" });
  assert.deepEqual(answer, { delivered: 2 });
  const fromSio = { from: "sio", text: "hello from socket.io" };
  assert.deepEqual(await back, [fromSio]);
  assert.deepEqual(await ws.next((frame) => frame.event === "said", "said at native"), {
    event: "said",
    data: fromSio,
  });
  assert.deepEqual(ws.frames, [], "nothing else reached the native client");
  await upgraded(sio);
});
