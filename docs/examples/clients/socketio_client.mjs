// client.mjs -- node client.mjs (npm install socket.io-client)
import { io } from "socket.io-client";

const origin = process.argv[2] ?? "http://localhost:8000";
const socket = io(`${origin}/chat`, { auth: { token: "s3cret" } }); // namespace = gateway
const answer = await socket.emitWithAck("join", { room: "lobby", name: "ann" });
console.log(JSON.stringify(answer)); // {"room":"lobby","welcome":"hello ann"}
socket.close();
