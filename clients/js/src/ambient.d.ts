// The few host globals the client uses, declared here so the package compiles against the
// ES library alone: its published types then need neither the DOM library nor @types/node.
// This file is not emitted; every host the client supports (browsers, Node >= 20) has them.
declare function setTimeout(callback: () => void, ms: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare class TextDecoder {
  decode(input: ArrayBuffer | ArrayBufferView): string;
}
declare class URL {
  constructor(url: string, base?: string);
  protocol: string;
  readonly href: string;
  readonly searchParams: { set(name: string, value: string): void };
}
// Named by @msgpack/msgpack's declarations (its decodeAsync / stream helpers, unused here).
type BufferSource = ArrayBufferView | ArrayBuffer;
interface ReadableStream<R = unknown> {}
