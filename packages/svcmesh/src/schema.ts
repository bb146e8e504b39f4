// Endpoint schemas: zod for checking, JSON Schema (from zod) as the published contract.
import { z } from "zod";

export type Schema = z.ZodType;

const anything = z.unknown();

export function isSchema(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && typeof (value as { safeParse?: unknown }).safeParse === "function";
}

/** The schema to check with: an absent schema accepts anything. */
export function schemaOrAny(schema: Schema | undefined): Schema {
  return schema ?? anything;
}

/** JSON Schema text for discovery metadata; types JSON Schema cannot express become `{}`. */
export function jsonSchemaText(schema: Schema | undefined, io: "input" | "output"): string {
  if (!schema) return "{}";
  try {
    return JSON.stringify(z.toJSONSchema(schema, { io, unrepresentable: "any" }));
  } catch {
    return "{}";
  }
}

export interface IssueSummary {
  path: (string | number)[];
  code: string;
  message: string;
}

/** At most this many issues travel back, so an error reply stays small. */
const MAX_ISSUES = 50;
/** Paths and messages echo the input (a record's keys): bounded, or a huge key makes a reply too big to send. */
const MAX_PATH_SEGMENTS = 16;
const MAX_SEGMENT_CHARS = 64;
const MAX_MESSAGE_CHARS = 256;

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function pathSegment(p: PropertyKey): string | number {
  return typeof p === "number" ? p : clip(String(p), MAX_SEGMENT_CHARS);
}

/** zod issues as plain data that survives msgpack. */
export function summarizeIssues(error: z.ZodError): IssueSummary[] {
  return error.issues.slice(0, MAX_ISSUES).map((i) => ({
    path: i.path.length > MAX_PATH_SEGMENTS ? [...i.path.slice(0, MAX_PATH_SEGMENTS).map(pathSegment), "…"] : i.path.map(pathSegment),
    code: i.code,
    message: clip(i.message, MAX_MESSAGE_CHARS),
  }));
}

export function describeIssues(issues: readonly IssueSummary[]): string {
  const shown = issues.slice(0, 3).map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message));
  return shown.join("; ") + (issues.length > 3 ? `; and ${issues.length - 3} more` : "");
}
