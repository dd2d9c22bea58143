// Loaded by tests/socketio/test_conformance.py (`mocha --require`), not part of the
// upstream suite. test-suite.js awaits one WebSocket event at a time (`waitFor` adds a
// `once` listener, the next one after its promise resolves), which is right in browsers,
// where each event is a task of its own and promise callbacks run between two events.
// ws 8.5.0 (the suite's lockfile) emits every frame read in one TCP chunk synchronously,
// so when two frames arrive together (a CONNECT answer and the `auth` event just after
// it) the second is lost before the test listens again: the suite then fails at random,
// against socket.io's own server too. This gives ws the browsers' order: each `message`
// and `close` event is emitted in a macrotask of its own, in arrival order.
"use strict";

const WebSocket = require("ws");

const emit = WebSocket.prototype.emit;
const queued = Symbol("queued events");

function next(socket) {
  const [type, args] = socket[queued][0];
  try {
    emit.call(socket, type, ...args);
  } finally {
    socket[queued].shift();
    if (socket[queued].length > 0) setImmediate(next, socket);
  }
}

WebSocket.prototype.emit = function (type, ...args) {
  if (type !== "message" && type !== "close") return emit.call(this, type, ...args);
  const queue = (this[queued] ??= []);
  queue.push([type, args]);
  if (queue.length === 1) setImmediate(next, this);
  return true;
};
