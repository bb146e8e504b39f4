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

/** zod issues as plain data that survives msgpack. */
export function summarizeIssues(error: z.ZodError): IssueSummary[] {
  return error.issues.slice(0, MAX_ISSUES).map((i) => ({
    path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)),
    code: i.code,
    message: i.message,
  }));
}

export function describeIssues(issues: readonly IssueSummary[]): string {
  const shown = issues.slice(0, 3).map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message));
  return shown.join("; ") + (issues.length > 3 ? `; and ${issues.length - 3} more` : "");
}
