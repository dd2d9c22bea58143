// The ai package's own WebSocketChatTransport against tests/ai/workers_app.py served by
// two worker processes on one redis-server (tests/ai/test_ai_sdk_workers.py): a chat
// whose stream runs on worker A is resumed through worker B. Every wait has a deadline.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { WebSocketChatTransport, readUIMessageStream } from "ai";
import { WebSocket } from "ws";

const A = process.env.GATEWAY_AI_URL_A; // http://127.0.0.1:PORT
const B = process.env.GATEWAY_AI_URL_B;
if (!A || !B) throw new Error("GATEWAY_AI_URL_A/B are not set: run these through test_ai_sdk_workers.py");
const TOKEN = "letmein";
const WAIT = 15000;
const SLOW_TOKENS = 60;

const transports = new Set();
afterEach(() => {
  for (const transport of transports) transport.close();
  transports.clear();
});

function transport(base, path = "/ai") {
  const made = new WebSocketChatTransport({
    url: base.replace("http", "ws") + path,
    params: { token: TOKEN },
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

function send(made, chatId, text, abortSignal) {
  return made.sendMessages({
    chatId,
    trigger: "submit-message",
    messageId: undefined,
    messages: [{ id: `m-${Math.random()}`, role: "user", parts: [{ type: "text", text }] }],
    abortSignal,
  });
}

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

async function closedHow(base, chatId) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const response = await fetch(`${base}/state`);
    const how = (await response.json()).closed[chatId];
    if (how !== undefined) return how;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the generator of chat ${chatId} was not closed in time`);
}

test("a transport on worker B resumes a chat running on worker A and gets the whole answer", async () => {
  const first = transport(A);
  const stream = await withTimeout(send(first, "chat-w-reload", "slow"), "send");
  const reader = stream.getReader();
  for (let i = 0; i < 5; i++) await withTimeout(reader.read(), "a chunk before the reload");
  first.close(); // the page reloads, and its new socket lands on the other worker
  const second = transport(B);
  const resumed = await withTimeout(second.reconnectToStream({ chatId: "chat-w-reload" }), "resume");
  assert.notEqual(resumed, null);
  const { chunks, message } = await withTimeout(readAll(resumed), "the resumed answer");
  assert.equal(textOf(message), answer("slow"));
  assert.equal(chunks.filter((chunk) => chunk.type === "start").length, 1);
  assert.deepEqual(chunks.at(-1), { type: "finish", finishReason: "stop" });
  assert.equal(await closedHow(A, "chat-w-reload"), "done");
});

test("a chat that ended moments ago on worker A is replayed whole on worker B", async () => {
  const first = transport(A);
  const { message: original } = await withTimeout(
    readAll(await withTimeout(send(first, "chat-w-ended", "hello"), "send")),
    "the answer",
  );
  assert.equal(textOf(original), answer("hello"));
  const resumed = await withTimeout(transport(B).reconnectToStream({ chatId: "chat-w-ended" }), "resume");
  assert.notEqual(resumed, null);
  const { message } = await withTimeout(readAll(resumed), "the replay");
  assert.equal(textOf(message), answer("hello"));
});

test("an abort on worker B closes the generator on worker A", async () => {
  const first = transport(A);
  const stream = await withTimeout(send(first, "chat-w-abort", "slow"), "send");
  const reader = stream.getReader();
  await withTimeout(reader.read(), "a first chunk");
  const controller = new AbortController();
  const second = transport(B);
  const resumed = await withTimeout(
    second.reconnectToStream({ chatId: "chat-w-abort", abortSignal: controller.signal }),
    "resume",
  );
  assert.notEqual(resumed, null);
  const resumedReader = resumed.getReader();
  for (let i = 0; i < 4; i++) await withTimeout(resumedReader.read(), "a resumed chunk");
  controller.abort();
  assert.equal(await closedHow(A, "chat-w-abort"), "closed");
});

test("reconnectToStream on worker B is null when nothing runs", async () => {
  const stream = await withTimeout(transport(B).reconnectToStream({ chatId: "chat-w-idle" }), "resume");
  assert.equal(stream, null);
});

test("reconnectToStream is null on a gateway without can_attach, though the chat runs", async () => {
  const first = transport(A, "/ai-private");
  const stream = await withTimeout(send(first, "chat-w-private", "slow"), "send");
  const reader = stream.getReader();
  await withTimeout(reader.read(), "a first chunk");
  for (const base of [A, B]) {
    const resumed = await withTimeout(
      transport(base, "/ai-private").reconnectToStream({ chatId: "chat-w-private" }),
      "resume",
    );
    assert.equal(resumed, null);
  }
});
