// Reads a JSON array of request frames on stdin and prints, for each, whether the ai
// package's own safeValidateWebSocketChatTransportRequest accepts it (and what it keeps).
import { safeValidateWebSocketChatTransportRequest } from "ai";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const verdicts = [];
for (const value of JSON.parse(input)) {
  const result = await safeValidateWebSocketChatTransportRequest({ value });
  verdicts.push(result.success ? { ok: true, data: result.data } : { ok: false });
}
process.stdout.write(JSON.stringify(verdicts));
