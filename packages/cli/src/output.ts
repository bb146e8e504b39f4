// Writing results: JSON (pretty for people, compact with --json), plain tables, and
// text from the mesh made safe to show on a terminal.

/** C0 controls, DEL and C1 controls: a terminal acts on them (colours, cursor moves, its title). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
/** The ones JSON.stringify leaves raw (it escapes C0 only). */
const RAW_IN_JSON = /[\u007f-\u009f]/g;

const escapeChar = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * Text anyone on the mesh may have written (trace records, events, audit records,
 * $SRV.INFO, remote error messages), for human output: control characters are shown
 * escaped, as \u001b, never acted on. JSON output (toJson) escapes them the JSON way.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, escapeChar);
}

/** JSON that also survives what msgpack can decode but JSON cannot hold. */
export function toJson(value: unknown, pretty: boolean): string {
  const text = JSON.stringify(value ?? null, replacer, pretty ? 2 : undefined);
  return (text ?? "null").replace(RAW_IN_JSON, escapeChar);
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
  return value;
}

export function printJson(value: unknown, pretty: boolean): void {
  process.stdout.write(toJson(value, pretty) + "\n");
}

/** Columns padded to their widest cell; the last column is not padded. Cells are made printable. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows].map((r) => r.map(printable));
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd())
    .join("\n");
}

export function printLine(text: string): void {
  process.stdout.write(text + "\n");
}

/** `1 service`, `3 services` (`many` for irregular plurals). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
