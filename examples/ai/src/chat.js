// The AI SDK page of examples/ai (chat.html): the `ai` package's own chat (AbstractChat, which
// useChat wraps in React) over its WebSocketChatTransport, against the gateway on /ai that
// serves the transport's protocol (gatewayasgi.ai.AISDKChat). Bundled by esbuild into
// dist/chat.js (`npm run build`, or `make ai-example`): no CDN, no React.
//
// What survives what:
// - a reload: the chat id and the finished messages are kept in sessionStorage; a chat whose
//   answer was still streaming resumes it (`chat.resumeStream()`, the transport's `resume`
//   frame): the gateway replays the stream from its first chunk, and the chat replaces the
//   answer it is building with the replay, so the page shows it once, whole;
// - a dropped socket: the transport does not reconnect by itself. It fails the running
//   request with a TypeError ("WebSocket chat network connection closed ..."), which the
//   chat keeps as a resumable stream (onFinish's `isDisconnect`); the page then calls
//   `chat.resumeStream()` with backoff until it is back, and the replay replaces the
//   partial answer.
import { AbstractChat, WebSocketChatTransport } from "ai";

/** A ChatState (what AbstractChat reads and writes) that tells the page about each change. */
class PageChatState {
  #status = "ready";
  #error = undefined;
  #messages;

  constructor(messages, onChange) {
    this.#messages = messages;
    this.onChange = onChange;
  }

  get status() { return this.#status; }
  set status(value) { this.#status = value; this.onChange(); }
  get error() { return this.#error; }
  set error(value) { this.#error = value; this.onChange(); }
  get messages() { return this.#messages; }
  set messages(value) { this.#messages = value; this.onChange(); }

  pushMessage = (message) => { this.messages = [...this.#messages, message]; };
  popMessage = () => { this.messages = this.#messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    const next = [...this.#messages];
    next[index] = this.snapshot(message);
    this.messages = next;
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor({ messages = [], onChange, ...init }) {
    super({ ...init, state: new PageChatState(messages, () => onChange(this)) });
  }
}

const randomId = () => {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

// The browser's owner token (localStorage: every tab of this browser) rides in the socket's
// query string; the gateway lets a connection into the chats whose id starts with its token.
const owner = localStorage.getItem("ai-example-owner") ?? randomId();
localStorage.setItem("ai-example-owner", owner);
// This tab's chat (sessionStorage: a reload keeps it, another tab has its own).
const chatId = sessionStorage.getItem("ai-chat-id") ?? `${owner}.${randomId()}`;
sessionStorage.setItem("ai-chat-id", chatId);
const saved = JSON.parse(sessionStorage.getItem("ai-chat-messages") ?? "[]");

const $ = (selector) => document.querySelector(selector);
const textOf = (message) =>
  message.parts.filter((part) => part.type === "text").map((part) => part.text).join("");

/** Whether an answer is on its way: set by a send, cleared by its end or a stop. */
const inflight = () => sessionStorage.getItem("ai-chat-inflight") === "1";
const setInflight = (on) => sessionStorage.setItem("ai-chat-inflight", on ? "1" : "0");

/** Keep the messages for a reload; while an answer streams, only those before it (a reload
 * resumes the answer by replaying it whole). */
function persist(messages) {
  let kept = messages;
  if (inflight()) {
    const lastUser = messages.findLastIndex((message) => message.role === "user");
    kept = messages.slice(0, lastUser + 1);
  }
  sessionStorage.setItem("ai-chat-messages", JSON.stringify(kept));
}

function render(chat) {
  const list = $("#messages");
  list.replaceChildren(...chat.messages.map((message) => {
    const item = document.createElement("p");
    item.className = `msg ${message.role}`;
    item.dataset.id = message.id;
    item.textContent = textOf(message);
    return item;
  }));
  const last = chat.messages.at(-1);
  $("#answer").textContent = last?.role === "assistant" ? textOf(last) : "";
  $("#status").textContent = chat.status + (chat.error ? `: ${chat.error.message}` : "");
  document.body.dataset.status = chat.status;
  $("#stop").disabled = chat.status !== "submitted" && chat.status !== "streaming";
  persist(chat.messages);
}

let networkError = false; // the last failure was the socket going away
let recovering = false;

const chat = new Chat({
  id: chatId,
  messages: saved,
  transport: new WebSocketChatTransport({
    url: new URL("ai", location.href).href,
    params: { owner },
  }),
  onChange: render,
  onError: (error) => {
    networkError = error instanceof TypeError && /network/i.test(error.message);
    log(`error: ${error.message}`);
  },
  onFinish: ({ isAbort, isDisconnect, isError }) => {
    if (isDisconnect) {
      log("connection lost: resuming");
      recover();
      return;
    }
    if (isAbort) log("stopped");
    else if (!isError) log("answer complete");
    setInflight(false);
    render(chat);
  },
});

function log(text) {
  const line = document.createElement("li");
  line.textContent = text;
  $("#log").append(line);
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Resume the chat's stream after the socket dropped, with backoff, until it is back. */
async function recover() {
  if (recovering) return;
  recovering = true;
  try {
    for (let attempt = 0; attempt < 30; attempt++) {
      await sleep(Math.min(100 * 2 ** attempt, 2000));
      networkError = false;
      await chat.resumeStream(); // resolves once the resumed stream ended (or failed)
      if (!networkError) break;
    }
  } finally {
    recovering = false;
  }
  if (!networkError) {
    setInflight(false);
    render(chat);
  }
}

$("#ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#prompt");
  const text = input.value.trim();
  if (!text || chat.status === "submitted" || chat.status === "streaming") return;
  input.value = "";
  setInflight(true);
  chat.sendMessage({ text });
});
$("#stop").addEventListener("click", () => chat.stop());
$("#new").addEventListener("click", () => {
  sessionStorage.removeItem("ai-chat-id");
  sessionStorage.removeItem("ai-chat-messages");
  setInflight(false);
  location.reload();
});

render(chat);
if (inflight()) {
  // The page was reloaded while an answer streamed: pick it up where the server has it.
  log("resuming the answer in progress");
  chat.resumeStream().then(() => {
    if (networkError) recover();
    else {
      setInflight(false);
      render(chat);
    }
  });
}

window.aiExample = { chat, chatId, owner };
