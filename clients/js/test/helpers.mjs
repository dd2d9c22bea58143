// Test helpers: a real gatewayasgi server (hypercorn) in a child process, a redis-server, a proxy
// that cuts connections, and bounded waits.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket as WsWebSocket } from "ws";

import { GatewayClient } from "../dist/index.js";

/** Node 22+ has a global WebSocket; Node 20 gets the `ws` package's. */
export const WebSocket = globalThis.WebSocket ?? WsWebSocket;

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const PYTHON = process.env.GATEWAY_PYTHON ?? resolve(ROOT, ".venv/bin/python");

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
 * A real client that reconnects fast (50 ms, backing off to at most 250 ms) and waits `wait` ms
 * for an ack; `options` add to or override these.
 */
export function fastClient(url, wait, options = {}) {
  return new GatewayClient(url, {
    WebSocket,
    reconnectDelay: 50,
    reconnectDelayMax: 250,
    ackTimeout: wait,
    ...options,
  });
}

/**
 * What every child process of the tests gets: the last 4,000 characters of its stderr (`log()`,
 * shown when it fails), a promise of its exit (`exited`), and a SIGKILL when the test process
 * exits first (it never outlives it, even when a test fails without stopping it; `release()`
 * once it was stopped).
 */
function supervise(child) {
  let log = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    log = (log + chunk).slice(-4000);
  });
  child.stderr.unref?.();
  child.unref();
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  return {
    log: () => log,
    exited: new Promise((done) => child.once("exit", done)),
    release: () => process.removeListener("exit", killOnExit),
  };
}

/**
 * Serve clients/js/test/server_app.py (or the ASGI `app`, "module:attribute") with hypercorn (or
 * `server`: "uvicorn") on `port` (a free one when omitted), with `env` added to the environment.
 * Returns `{ port, url, stop }`; `stop()` sends SIGTERM and, after 5 s, SIGKILL. `url` is
 * server_app.py's gateway.
 */
export async function startServer(
  port,
  app = "clients.js.test.server_app:app",
  server = "hypercorn",
  env = {},
) {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} not found: run \`make install\` first`);
  port ??= await freePort();
  const child = spawn(PYTHON, SERVER_ARGS[server](app, port), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  // hypercorn logs cancelled connections on shutdown: its stderr is shown only on failure.
  const { log, exited, release } = supervise(child);
  const failed = exited.then((code) => {
    throw new Error(`server exited early (code ${code})`);
  });
  try {
    await Promise.race([waitForPort(port, 20000), failed]);
  } catch (error) {
    child.kill("SIGKILL");
    throw new Error(`${error.message}\n${log()}`);
  }
  failed.catch(() => undefined);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
    release();
  };
  return { port, url: `ws://127.0.0.1:${port}/ws`, stop };
}

/**
 * A TCP proxy on loopback. `cut()` destroys both sides of every relayed connection at once (no
 * WebSocket close frame: the server keeps the session); while `hold()` is on, new connections are
 * destroyed on arrival, so a reconnecting client fails and backs off until `release()`. New
 * connections go to `targetPort`, which a test may change (to send a client to another worker).
 */
export class CutProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.holding = false;
    this.server = net.createServer((down) => {
      if (this.holding) {
        down.destroy();
        return;
      }
      const up = net.connect(this.targetPort, "127.0.0.1");
      const pair = [down, up];
      this.pairs.add(pair);
      const end = () => {
        this.pairs.delete(pair);
        down.destroy();
        up.destroy();
      };
      for (const socket of pair) {
        socket.on("error", end);
        socket.on("close", end);
      }
      down.pipe(up);
      up.pipe(down);
    });
  }

  async start() {
    await new Promise((done) => this.server.listen(0, "127.0.0.1", done));
    this.port = this.server.address().port;
    return this;
  }

  /** Destroy every relayed connection; returns how many there were. */
  cut() {
    const pairs = [...this.pairs];
    this.pairs.clear();
    for (const [down, up] of pairs) {
      down.destroy();
      up.destroy();
    }
    return pairs.length;
  }

  hold() {
    this.holding = true;
  }

  release() {
    this.holding = false;
  }

  async close() {
    this.cut();
    await new Promise((done) => this.server.close(done));
  }
}

/** The redis-server binary: `redis-server` on PATH, or the `REDIS_SERVER` environment variable. */
export const REDIS_SERVER = process.env.REDIS_SERVER ?? "redis-server";

async function redisPing(port) {
  return new Promise((done) => {
    const socket = net.connect(port, "127.0.0.1");
    let reply = "";
    socket.setTimeout(500, () => socket.destroy());
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk;
      if (reply.includes("\r\n")) socket.end();
    });
    socket.once("error", () => done(false));
    socket.once("close", () => done(reply.startsWith("+PONG")));
  });
}

/**
 * A fresh `redis-server` (no persistence) on a free loopback port, in a temporary directory of its
 * own. Returns `{ port, url, stop }` once it answers PING (within 10 s); `stop()` kills it and
 * removes the directory. Rejects when the binary is missing (`error.code === "ENOENT"`).
 */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(resolve(tmpdir(), "gatewayasgi-redis-"));
  const options = { port, bind: "127.0.0.1", save: "", appendonly: "no", dir, daemonize: "no" };
  const argv = Object.entries(options).flatMap(([name, value]) => [`--${name}`, String(value)]);
  const child = spawn(REDIS_SERVER, [...argv, "--loglevel", "warning"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const { log, exited, release } = supervise(child);
  const started = new Promise((done, fail) => {
    child.once("spawn", done);
    child.once("error", fail);
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill("SIGKILL");
      await withTimeout(exited, 5000, "redis-server exit").catch(() => undefined);
    }
    release();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await started;
    const deadline = Date.now() + 10000;
    while (!(await redisPing(port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (code ${child.exitCode})`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`);
      await sleep(20);
    }
  } catch (error) {
    await stop();
    if (log()) error.message += `\n${log()}`;
    throw error;
  }
  return { port, url: `redis://127.0.0.1:${port}/0`, stop };
}
