// The ai package's own WebSocketChatTransport and readUIMessageStream (with `ws` as the
// WebSocket) against tests/ai/app.py served by tests/ai/test_ai_sdk.py. Every wait has a
// deadline.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { WebSocketChatTransport, readUIMessageStream } from "ai";
import { WebSocket } from "ws";

const URL = process.env.GATEWAY_AI_URL; // http://127.0.0.1:PORT
if (!URL) throw new Error("GATEWAY_AI_URL is not set: run these through test_ai_sdk.py");
const TOKEN = "letmein";
const WAIT = 10000;
const SLOW_TOKENS = 60;

const transports = new Set();
afterEach(() => {
  for (const transport of transports) transport.close();
  transports.clear();
});

function transport(token = TOKEN) {
  const made = new WebSocketChatTransport({
    url: URL.replace("http", "ws") + "/ai",
    params: { token },
    webSocket: WebSocket,
  });
  transports.add(made);
  return made;
}

function withTimeout(promise, what, ms = WAIT) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function answer(prompt) {
  const count = prompt.startsWith("slow") ? SLOW_TOKENS : 5;
  return Array.from({ length: count }, (_, i) => `${prompt}-${i} `).join("");
}

function userMessage(text) {
  return { id: `m-${Math.random()}`, role: "user", parts: [{ type: "text", text }] };
}

function send(made, chatId, text, abortSignal) {
  return made.sendMessages({
    chatId,
    trigger: "submit-message",
    messageId: undefined,
    messages: [userMessage(text)],
    abortSignal,
  });
}

/** Every chunk of `stream` (a ReadableStream of UIMessageChunk), and the message they make. */
async function readAll(stream) {
  const [raw, forMessage] = stream.tee();
  const chunks = [];
  const collect = (async () => {
    for await (const chunk of raw) chunks.push(chunk);
  })();
  let message;
  for await (const snapshot of readUIMessageStream({ stream: forMessage })) message = snapshot;
  await collect;
  return { chunks, message };
}

function textOf(message) {
  return message.parts.filter((part) => part.type === "text").map((part) => part.text).join("");
}

async function state() {
  const response = await fetch(`${URL}/state`);
  return (await response.json()).closed;
}

async function closedHow(chatId) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const how = (await state())[chatId];
    if (how !== undefined) return how;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the generator of chat ${chatId} was not closed in time`);
}

test("a whole answer", async () => {
  const made = transport();
  const stream = await withTimeout(send(made, "chat-whole", "hello"), "send");
  const { chunks, message } = await withTimeout(readAll(stream), "the answer");
  assert.equal(textOf(message), answer("hello"));
  assert.equal(message.role, "assistant");
  const types = chunks.map((chunk) => chunk.type);
  assert.deepEqual(types.slice(0, 2), ["start", "text-start"]);
  assert.deepEqual(types.slice(-2), ["text-end", "finish"]);
  assert.equal(types.filter((type) => type === "text-delta").length, 5);
  assert.equal(await closedHow("chat-whole"), "done");
});

test("two chats at once on one transport, each answer whole", async () => {
  const made = transport();
  const [a, b] = await withTimeout(
    Promise.all([send(made, "chat-a", "first"), send(made, "chat-b", "second")]),
    "send both",
  );
  const [ra, rb] = await withTimeout(Promise.all([readAll(a), readAll(b)]), "both answers");
  assert.equal(textOf(ra.message), answer("first"));
  assert.equal(textOf(rb.message), answer("second"));
});

test("an error in the model reaches the chat as its errorText", async () => {
  const made = transport();
  const stream = await withTimeout(send(made, "chat-fail", "fail"), "send");
  const { chunks, message } = await withTimeout(readAll(stream), "the failing answer");
  assert.deepEqual(chunks.at(-1), { type: "error", errorText: "the model fell over" });
  assert.equal(textOf(message), "fail-0 fail-1 ");
  assert.equal(await closedHow("chat-fail"), "done");
});

test("an abort closes the generator on the server", async () => {
  const made = transport();
  const controller = new AbortController();
  const stream = await withTimeout(send(made, "chat-abort", "slow", controller.signal), "send");
  const reader = stream.getReader();
  const seen = [];
  while (seen.length < 4) {
    const { value, done } = await withTimeout(reader.read(), "a chunk");
    assert.equal(done, false);
    seen.push(value);
  }
  controller.abort();
  assert.equal(await closedHow("chat-abort"), "closed");
  // The transport still serves the next request on the same socket.
  const next = await withTimeout(send(made, "chat-after-abort", "again"), "send after abort");
  const { message } = await withTimeout(readAll(next), "the next answer");
  assert.equal(textOf(message), answer("again"));
});

test("reconnectToStream is null when nothing runs", async () => {
  const made = transport();
  const stream = await withTimeout(made.reconnectToStream({ chatId: "chat-idle" }), "resume");
  assert.equal(stream, null);
});

test("a second transport resumes a running stream by chat id and gets the whole answer", async () => {
  const first = transport();
  const stream = await withTimeout(send(first, "chat-reload", "slow"), "send");
  const reader = stream.getReader();
  for (let i = 0; i < 5; i++) await withTimeout(reader.read(), "a chunk before the reload");
  first.close(); // the page reloads
  const second = transport();
  const resumed = await withTimeout(second.reconnectToStream({ chatId: "chat-reload" }), "resume");
  assert.notEqual(resumed, null);
  const { chunks, message } = await withTimeout(readAll(resumed), "the resumed answer");
  assert.equal(textOf(message), answer("slow"));
  assert.equal(chunks.filter((chunk) => chunk.type === "start").length, 1);
  assert.equal(await closedHow("chat-reload"), "done");
});

test("the handshake guard refuses a wrong token", async () => {
  const made = transport("wrong");
  await assert.rejects(withTimeout(send(made, "chat-denied", "hello"), "refused send"));
});

test("a send the ai package would refuse gets an error frame for its request", async () => {
  const socket = new WebSocket(`${URL.replace("http", "ws")}/ai?token=${TOKEN}`);
  await withTimeout(new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  }), "open");
  const reply = withTimeout(new Promise((resolve) => {
    socket.once("message", (data) => resolve(JSON.parse(String(data))));
  }), "the error frame");
  socket.send(JSON.stringify({
    type: "send", requestId: "r1", id: "c1", trigger: "submit-message",
    messages: [], headers: {}, body: {},
  }));
  const frame = await reply;
  socket.close();
  assert.equal(frame.type, "error");
  assert.equal(frame.requestId, "r1");
  assert.match(frame.errorText, /^Invalid UI messages in WebSocket chat request/);
});
