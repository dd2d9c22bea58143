// client.mjs -- node client.mjs ws://127.0.0.1:8000/ai (npm install @gatewayasgi/client ws)
import { GatewayClient } from "@gatewayasgi/client";
import { WebSocket } from "ws"; // Node 20; browsers and Node 22 have a global WebSocket

const client = new GatewayClient(process.argv[2] ?? "ws://127.0.0.1:8000/ai", { WebSocket });
await client.connect();

const answer = client.stream("prompt", { text: "hello there" }, { timeout: 10000 });
let text = "";
for await (const item of answer) text += item.delta; // each item's data, in order
console.log(text); // You said: hello there
console.log(JSON.stringify(await answer.result)); // {"tokens":4}

// A stop button: aborting the signal cancels the stream on the server.
const stop = new AbortController();
const ticks = [];
try {
  for await (const n of client.stream("ticker", 0.05, { signal: stop.signal })) {
    ticks.push(n);
    if (n === 3) stop.abort();
  }
} catch (error) {
  console.log(error.name, ticks); // AbortError [ 1, 2, 3 ]
}
client.close();
