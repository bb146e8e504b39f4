// Shared by test suites: mesh connections that are closed together, and a check that
// a promise fails with a MeshError.
import assert from "node:assert/strict";
import { connect, isMeshError, type Mesh, type MeshError } from "svcmesh";

/** Opens named mesh connections to one server and closes them all at the end. */
export function meshPool(url: () => string): { open(name: string): Promise<Mesh>; closeAll(): Promise<void> } {
  const open: Mesh[] = [];
  return {
    async open(name) {
      const m = await connect({ servers: url(), name });
      open.push(m);
      return m;
    },
    async closeAll() {
      await Promise.allSettled(open.splice(0).map((m) => m.close()));
    },
  };
}

/** Awaits `p`, asserts it rejected with a MeshError, and returns that error. */
export async function meshFailure(p: Promise<unknown>): Promise<MeshError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isMeshError(e), `expected a MeshError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected the call to fail");
}
