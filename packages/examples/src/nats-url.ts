// NATS_URL as the nats CLI reads it: one URL or a comma-separated list (a cluster).

/** The server list in a NATS_URL-style string, or undefined when it names none. */
export function natsServers(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const list = text.split(/[\s,]+/).filter((s) => s.length > 0);
  return list.length > 0 ? list : undefined;
}
