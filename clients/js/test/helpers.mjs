// Test helpers: a real gatewayasgi server (hypercorn) in a child process, and bounded waits.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket as WsWebSocket } from "ws";

/** Node 22+ has a global WebSocket; Node 20 gets the `ws` package's. */
export const WebSocket = globalThis.WebSocket ?? WsWebSocket;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const PYTHON = process.env.GATEWAY_PYTHON ?? resolve(ROOT, ".venv/bin/python");

/** Reject with `label` if `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next `name` lifecycle event of `client`, within `ms`. */
export function nextLifecycle(client, name, ms = 5000) {
  return withTimeout(
    new Promise((done) => client.lifecycle.once(name, done)),
    ms,
    `lifecycle ${name}`,
  );
}

/** The next server event `name` received by `client`, within `ms`. */
export function nextEvent(client, name, ms = 5000) {
  return withTimeout(new Promise((done) => client.once(name, done)), ms, `event ${name}`);
}

export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

export async function freePort() {
  const server = net.createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

async function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const open = await new Promise((done) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => socket.end(() => done(true)));
      socket.once("error", () => done(false));
    });
    if (open) return;
    await sleep(50);
  }
  throw new Error(`server did not accept connections on port ${port} within ${ms} ms`);
}

const SERVER_ARGS = {
  hypercorn: (app, port) => [
    "-m",
    "hypercorn",
    app,
    "--bind",
    `127.0.0.1:${port}`,
    "--graceful-timeout",
    "1",
    "--log-level",
    "warning",
  ],
  uvicorn: (app, port) => [
    "-m",
    "uvicorn",
    app,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--timeout-graceful-shutdown",
    "1",
    "--log-level",
    "warning",
  ],
};

/**
 * Serve clients/js/test/server_app.py (or the ASGI `app`, "module:attribute") with hypercorn (or
 * `server`: "uvicorn") on `port` (a free one when omitted). Returns `{ port, url, stop }`; `stop()`
 * sends SIGTERM and, after 5 s, SIGKILL. `url` is server_app.py's gateway.
 */
export async function startServer(
  port,
  app = "clients.js.test.server_app:app",
  server = "hypercorn",
) {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} not found: run \`make install\` first`);
  port ??= await freePort();
  const child = spawn(PYTHON, SERVER_ARGS[server](app, port), {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "pipe"],
  });
  // hypercorn logs cancelled connections on shutdown: keep its stderr, show it only on failure.
  let log = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    log = (log + chunk).slice(-4000);
  });
  child.stderr.unref?.();
  // Never outlive the test process, even when a test fails without stopping its server.
  child.unref();
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise((done) => child.once("exit", done));
  const failed = exited.then((code) => {
    throw new Error(`server exited early (code ${code})`);
  });
  try {
    await Promise.race([waitForPort(port, 20000), failed]);
  } catch (error) {
    child.kill("SIGKILL");
    throw new Error(`${error.message}\n${log}`);
  }
  failed.catch(() => undefined);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
    process.removeListener("exit", killOnExit);
  };
  return { port, url: `ws://127.0.0.1:${port}/ws`, stop };
}
