// Every wait in the examples is bounded: these helpers turn "wait for X" into
// "wait for X for at most N ms, then fail with a message that says what was awaited".

export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no result within ${formatMs(ms)}`);
    this.name = "TimeoutError";
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Settles like `promise`, or rejects with a TimeoutError after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Calls `attempt` until it returns a value (not undefined), at most until `timeoutMs` has passed. */
export async function poll<T>(what: string, timeoutMs: number, intervalMs: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt();
    if (value !== undefined) return value;
    if (Date.now() + intervalMs > until) throw new TimeoutError(what, timeoutMs);
    await sleep(intervalMs);
  }
}

/** A positive integer (a count, or milliseconds) from the environment, or the default when unset. */
export function envInt(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
