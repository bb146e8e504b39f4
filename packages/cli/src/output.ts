// Writing results: JSON (pretty for people, compact with --json) and plain tables.

/** JSON that also survives what msgpack can decode but JSON cannot hold. */
export function toJson(value: unknown, pretty: boolean): string {
  const text = JSON.stringify(value ?? null, replacer, pretty ? 2 : undefined);
  return text ?? "null";
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
  return value;
}

export function printJson(value: unknown, pretty: boolean): void {
  process.stdout.write(toJson(value, pretty) + "\n");
}

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd())
    .join("\n");
}

export function printLine(text: string): void {
  process.stdout.write(text + "\n");
}
