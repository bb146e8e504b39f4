// YAML text → a checked policy document, or every error with its line and column.
// YAML syntax errors and schema errors are reported alike; an invalid document is
// refused whole (no partial policy ever comes out).
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { z } from "zod";
import { type PolicyDocument, type PolicySchemaOptions, PolicyDocumentSchema, policySchema, policyWarnings } from "./schema.js";

export interface PolicyError {
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** Where in the document, e.g. `services.payments.traffic["2.1.0"]`; "" for the whole document. */
  path: string;
  message: string;
}

export type PolicyParseResult =
  | { ok: true; policy: PolicyDocument; warnings: PolicyError[] }
  | { ok: false; errors: PolicyError[] };

/** At most this many errors are reported; a wholly wrong file would otherwise flood. */
const MAX_ERRORS = 100;

export function parsePolicy(text: string, options: PolicySchemaOptions = {}): PolicyParseResult {
  if (typeof text !== "string") return { ok: false, errors: [{ line: 1, column: 1, path: "", message: "a policy document must be YAML text" }] };
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const at = (offset: number | undefined) => {
    const p = lc.linePos(Math.min(Math.max(offset ?? 0, 0), text.length));
    return { line: p.line, column: p.col };
  };
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.slice(0, MAX_ERRORS).map((e) => ({ ...at(e.pos[0]), path: "", message: yamlMessage(e.message) })),
    };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    return { ok: false, errors: [{ ...at(0), path: "", message: e instanceof Error ? e.message : String(e) }] };
  }
  if (value === null || value === undefined) {
    return { ok: false, errors: [{ ...at(0), path: "", message: `the document is empty: a policy starts with "version: 1"` }] };
  }
  const schema = options.knownIdentities ? policySchema(options) : PolicyDocumentSchema;
  const parsed = schema.safeParse(value, { reportInput: true });
  if (!parsed.success) {
    const errors = parsed.error.issues.flatMap((i) => issueErrors(doc, i, at)).slice(0, MAX_ERRORS);
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    return { ok: false, errors };
  }
  const warnings = policyWarnings(parsed.data).map((w) => ({ ...at(offsetOf(doc, w.path, false)), path: formatPath(w.path), message: w.message }));
  return { ok: true, policy: parsed.data, warnings };
}

/** `file:line:col: path: message`, one line per error. */
export function formatPolicyErrors(errors: readonly PolicyError[], fileName = "<policy>"): string {
  return errors.map((e) => `${fileName}:${e.line}:${e.column}: ${e.path ? `${e.path}: ` : ""}${e.message}`).join("\n");
}

/** `services.payments.traffic["2.1.0"]`, `identities.claims.roles[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string" && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

type Position = (offset: number | undefined) => { line: number; column: number };

function issueErrors(doc: Document, issue: z.core.$ZodIssue, at: Position): PolicyError[] {
  const path = issue.path as PropertyKey[];
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => {
      const hint = suggest(k, knownKeys(issue));
      return { ...at(offsetOf(doc, [...path, k], true)), path: formatPath([...path, k]), message: `unknown key "${k}"${hint ? ` (did you mean "${hint}"?)` : ""}` };
    });
  }
  if (issue.code === "invalid_key") {
    const inner = issue.issues[0]?.message ?? issue.message;
    return [{ ...at(offsetOf(doc, path, true)), path: formatPath(path), message: inner }];
  }
  const onKey = issue.code === "custom" && (issue.params as { at?: string } | undefined)?.at === "key";
  return [{ ...at(offsetOf(doc, path, onKey)), path: formatPath(path), message: issueMessage(issue) }];
}

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type" && issue.input === undefined) return `required (${issue.expected})`;
  if (issue.code === "invalid_union" && issue.message === "Invalid input") return "invalid value";
  return issue.message;
}

/**
 * The source offset of the node at `path`: the value's own node, or its key when
 * `onKey` (or when the value is empty). Where the path runs out (a missing key), the
 * deepest node that exists.
 */
function offsetOf(doc: Document, path: readonly PropertyKey[], onKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let best: number | undefined = rangeStart(node);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && keyText(p.key) === String(seg));
      if (!pair) return best;
      const keyStart = rangeStart(pair.key);
      const valueStart = rangeStart(pair.value);
      if (last) return onKey ? (keyStart ?? best) : (valueStart ?? keyStart ?? best);
      best = valueStart ?? keyStart ?? best;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg];
      const start = rangeStart(item);
      if (start === undefined) return best;
      best = start;
      node = item;
    } else {
      return best;
    }
  }
  return best;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

function rangeStart(node: unknown): number | undefined {
  const r = (node as Node | null | undefined)?.range;
  return r ? r[0] : undefined;
}

function yamlMessage(message: string): string {
  // The yaml package appends " at line L, column C" in some messages; the position is ours to give.
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, "").trim();
}

/** The keys the object at the issue's path accepts, for "did you mean". */
function knownKeys(issue: z.core.$ZodIssue): string[] {
  return knownKeysAt(issue.path as PropertyKey[]);
}

const TOP = ["version", "identities", "defaults", "services"];
const IDENTITY = ["key", "roles", "clearances"];
const DEFAULTS = ["allow", "timeoutMs", "retry", "breaker", "rateLimit"];
const SERVICE = ["allow", "rateLimits", "traffic", "endpoints", "timeoutMs", "retry", "breaker"];
const ENDPOINT = ["allow", "roles", "dataClass", "idempotent", "timeoutMs", "maxConcurrent"];
const RETRY = ["attempts", "backoffMs", "maxBackoffMs", "attemptTimeoutMs"];
const BREAKER = ["enabled", "errorThresholdPercentage", "volumeThreshold", "failureThreshold", "resetTimeoutMs", "rollingCountTimeoutMs"];
const RATE = ["rps", "burst"];

function knownKeysAt(p: PropertyKey[]): string[] {
  const [a, , c] = p;
  if (p.length === 0) return TOP;
  if (a === "identities" && p.length === 2) return IDENTITY;
  if (a === "defaults") {
    if (p.length === 1) return DEFAULTS;
    if (p[1] === "retry") return RETRY;
    if (p[1] === "breaker") return BREAKER;
    if (p[1] === "rateLimit") return RATE;
  }
  if (a === "services") {
    if (p.length === 2) return SERVICE;
    if (p.length === 3 && c === "retry") return RETRY;
    if (p.length === 3 && c === "breaker") return BREAKER;
    if (p.length === 4 && c === "rateLimits") return RATE;
    if (p.length === 4 && c === "endpoints") return ENDPOINT;
  }
  return [];
}

/** The closest known key: a case-insensitive match, a prefix, or within edit distance 2. */
function suggest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const prefix = key.length >= 3 && (k.startsWith(key) || key.startsWith(k));
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : prefix ? 1 : distance(key, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
