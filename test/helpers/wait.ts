// Waiting in tests for something that happens asynchronously, bounded in time.
import assert from "node:assert/strict";
import { sleep } from "./nats-server.ts";

/** Polls `check` every 20 ms until it holds; fails the test naming `what` after `ms`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await sleep(20);
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

/** A pino-shaped logger that keeps each message in `into` (cast to the logger type a test needs). */
export function recordingLogger<T>(into: string[]): T {
  const log = (_obj: unknown, msg?: string) => void into.push(msg ?? "");
  const logger = { trace: log, debug: log, info: log, warn: log, error: log, fatal: log, child: () => logger };
  return logger as unknown as T;
}
