// The lost-package story as a client sees it: a handful of claims submitted one by one
// (some refused), then bursts of claims in parallel to show the payments instances
// sharing the load. Used by the demo and by the one-shot client.
import { type ErrorCode, isMeshError, type MeshCalls } from "svcmesh";
import { claimants } from "./auth.js";
import { CLAIMS_TARGET, type Claim, type ClaimReceipt } from "./claims.js";

export type Outcome =
  | { claim: Claim; ok: true; receipt: ClaimReceipt }
  | { claim: Claim; ok: false; code: string; message: string };

/** Paid claims per payments instance id. */
export interface Served {
  instance: string;
  host: string;
  pid: number;
  count: number;
}

export interface StoryOptions {
  /** Budget of each claim (the nested auth and payments calls share it). */
  timeoutMs?: number;
  /** Claims per parallel burst. */
  burst?: number;
  /** Bursts are sent until `enoughServed` holds, at most this many. */
  maxBursts?: number;
  /** When the load has been spread enough, e.g. "both of my payments instances paid some". */
  enoughServed: (served: ReadonlyMap<string, Served>) => boolean;
}

export interface StoryResult {
  script: ScriptedClaim[];
  /** The handful of claims, in the order sent (same order as `script`). */
  outcomes: Outcome[];
  /** Claims sent in parallel bursts after them. */
  burstClaims: number;
  /** Burst claims that were refused or failed, by code. */
  burstFailures: Map<string, number>;
  served: Map<string, Served>;
  enough: boolean;
}

function tokenOf(id: string): string {
  const c = claimants.get(id);
  if (!c) throw new Error(`no claimant ${id} in the auth table`);
  return c.token;
}

/** What a scripted claim should come to: paid, or refused with this error code. */
export type Expected = "paid" | ErrorCode;

export interface ScriptedClaim {
  claim: Claim;
  expect: Expected;
}

/** Six good claims and three that must be refused: unknown claimant, wrong token, a negative amount. */
export function sampleClaims(): ScriptedClaim[] {
  const good = (n: number, claimantId: string, usd: number, description: string): ScriptedClaim => ({
    claim: { claimId: `C-${1000 + n}`, claimantId, token: tokenOf(claimantId), usd, description },
    expect: "paid",
  });
  return [
    good(1, "alice", 42.5, "headphones lost between depot and porch"),
    good(2, "bob", 19.99, "paperback never arrived"),
    { claim: { claimId: "C-1003", claimantId: "mallory", token: "tok-guess", usd: 900, description: "a laptop, allegedly" }, expect: "FORBIDDEN" },
    good(4, "carol", 120, "parcel marked delivered, not found"),
    good(5, "dmitri", 64.25, "box arrived empty"),
    { claim: { claimId: "C-1006", claimantId: "alice", token: "tok-alice-0000", usd: 75, description: "second claim with a stale token" }, expect: "FORBIDDEN" },
    good(7, "bob", 310, "camera lens missing from package"),
    { claim: { claimId: "C-1008", claimantId: "carol", token: tokenOf("carol"), usd: -5, description: "refund of minus five dollars" }, expect: "BAD_REQUEST" },
    good(9, "alice", 8.75, "phone case lost in transit"),
  ];
}

/** How the run differs from the script (empty when it went as written). */
export function deviations(result: StoryResult): string[] {
  const out: string[] = [];
  result.outcomes.forEach((o, i) => {
    const expected = result.script[i]?.expect;
    const got = o.ok ? "paid" : o.code;
    if (got !== expected) out.push(`claim ${o.claim.claimId}: expected ${expected}, got ${got}${o.ok ? "" : ` (${o.message})`}`);
  });
  for (const [code, n] of result.burstFailures) out.push(`${n} of the ${result.burstClaims} burst claims failed with ${code}`);
  return out;
}

export async function submit(mesh: Pick<MeshCalls, "call">, claim: Claim, timeoutMs: number): Promise<Outcome> {
  try {
    const receipt = await mesh.call<ClaimReceipt>(CLAIMS_TARGET, "submit", claim, { timeoutMs });
    return { claim, ok: true, receipt };
  } catch (e) {
    if (!isMeshError(e)) throw e;
    return { claim, ok: false, code: e.code, message: e.message };
  }
}

export async function runStory(mesh: Pick<MeshCalls, "call">, options: StoryOptions): Promise<StoryResult> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const burst = options.burst ?? 20;
  const maxBursts = options.maxBursts ?? 5;
  const served = new Map<string, Served>();
  const count = (o: Outcome) => {
    if (!o.ok) return;
    const p = o.receipt.payments;
    const s = served.get(p.instance) ?? { instance: p.instance, host: p.host, pid: p.pid, count: 0 };
    s.count++;
    served.set(p.instance, s);
  };

  const script = sampleClaims();
  const outcomes: Outcome[] = [];
  for (const { claim } of script) {
    const o = await submit(mesh, claim, timeoutMs);
    count(o);
    outcomes.push(o);
  }

  let burstClaims = 0;
  const burstFailures = new Map<string, number>();
  // At least one burst, so the balancing is visible; more only while it is not.
  for (let b = 0; b < maxBursts && (b === 0 || !options.enoughServed(served)); b++) {
    const batch = Array.from({ length: burst }, (_, i): Claim => {
      const claimantId = ["alice", "bob", "carol", "dmitri"][i % 4]!;
      return { claimId: `C-${2000 + burstClaims + i}`, claimantId, token: tokenOf(claimantId), usd: 10 + i, description: "bulk claim" };
    });
    burstClaims += batch.length;
    for (const o of await Promise.all(batch.map((c) => submit(mesh, c, timeoutMs)))) {
      count(o);
      if (!o.ok) burstFailures.set(o.code, (burstFailures.get(o.code) ?? 0) + 1);
    }
  }
  return { script, outcomes, burstClaims, burstFailures, served, enough: options.enoughServed(served) };
}
