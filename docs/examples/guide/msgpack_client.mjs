// client.mjs -- node client.mjs ws://127.0.0.1:8000/chat (npm install @gatewayasgi/client ws)
import { GatewayClient } from "@gatewayasgi/client";
import { WebSocket } from "ws"; // Node 20; browsers and Node 22 have a global WebSocket

const url = process.argv[2] ?? "wss://example.com/chat";
// --8<-- [start:client]
const client = new GatewayClient(url, { wireProtocol: "msgpack", WebSocket });
// --8<-- [end:client]
await client.connect();
const body = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
const reply = await client.emitWithAck("upload", { name: "a.png", body }, { timeout: 5000 });
console.log(reply.size, reply.head instanceof Uint8Array, Array.from(reply.head)); // 7 true [ 137, 80, 78, 71 ]
client.close();
