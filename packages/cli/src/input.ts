// The payload of `svcmesh call`: a JSON argument, `-` for standard input, or nothing.
import { usageError } from "./errors.js";

export async function readPayload(arg: string | undefined): Promise<unknown> {
  if (arg === undefined) return undefined;
  const fromStdin = arg === "-";
  const text = fromStdin ? await readStdin() : arg;
  if (fromStdin && text.trim() === "") throw usageError("payload: standard input is empty (expected JSON)");
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw usageError(`payload${fromStdin ? " on standard input" : ""} is not valid JSON: ${(e as Error).message}`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
