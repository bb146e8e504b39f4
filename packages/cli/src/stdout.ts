// Standard output whose reader went away (`svcmesh events | head`): writes then fail
// with EPIPE, an 'error' event that would crash the process. Every command and the
// help output share this one handler: they stop writing and exit quietly with 0.

let gone = false;
const listeners = new Set<() => void>();

/** Installed once by main, before anything is written. */
export function handleStdoutErrors(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (gone) return;
    gone = true;
    // Any other failure (a full disk) lost output: that is not a success.
    if (e.code !== "EPIPE") {
      process.stderr.write(`svcmesh: cannot write to standard output: ${e.message}\n`);
      process.exitCode = 1;
    }
    for (const fn of [...listeners]) fn();
  });
}

/** True once nothing written to stdout can arrive anywhere. */
export function stdoutGone(): boolean {
  return gone;
}

/** Calls `fn` when stdout goes away (at once if it has); returns the unsubscribe. */
export function onStdoutGone(fn: () => void): () => void {
  if (gone) {
    fn();
    return () => undefined;
  }
  listeners.add(fn);
  return () => listeners.delete(fn);
}
