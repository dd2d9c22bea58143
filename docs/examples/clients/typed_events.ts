// --8<-- [start:import]
import { GatewayClient } from "@gatewayasgi/client";
// --8<-- [end:import]
import type { ClientEvents, ServerEvents } from "./events.js";

const client = new GatewayClient<ServerEvents, ClientEvents>("wss://example.com/chat");
await client.emitWithAck("join", { room: 1 }); // tsc: 'number' is not assignable to 'string'
