// Strings read out of a larger text are, in V8, slices of it once they are 13 characters
// or longer: the slice keeps the whole text alive. A request's header values are slices
// of its decoded header block (wire.ts reads the block once), so a value kept past the
// request (a cache key, a rate-limit bucket's caller name) would keep the whole block.

/** A copy of `text` that shares no memory with the string it was sliced from. */
export function unsharedCopy(text: string): string {
  return text === "" ? text : Buffer.from(text, "utf16le").toString("utf16le");
}
