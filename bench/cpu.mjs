// CPU accounting for one measured window, from /proc: how much CPU each of our three
// processes (caller, service, nats-server) spent per call, and how many cores
// everything else on the machine took meanwhile. The 2 cores are shared with other
// work (builds, tests), so a row that lost to a busy neighbour must be visible as such.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const TICK_MS = (() => {
  try {
    return 1000 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));
  } catch {
    return 10; // CLK_TCK is 100 on every Linux we run on
  }
})();

/** Busy ticks of the whole machine (steal included: the hypervisor took that CPU), and the steal alone. */
function systemTicks() {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system + irq + softirq + steal, steal };
}

/** utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat, counted after the `(comm)`). */
function processTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN; // already gone
  }
}

/**
 * Read and write system calls (syscr + syscw of /proc/<pid>/io) and the times its
 * threads went to sleep (voluntary context switches, summed over /proc/<pid>/task):
 * counts, not times, so they hold still while the VM's speed swings. A call that makes
 * a process wake up or write more often shows here even when its CPU time is noise.
 */
function processEvents(pid) {
  try {
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    const field = (name) => Number(new RegExp(`^${name}: (\\d+)`, "m").exec(io)?.[1] ?? NaN);
    let wakeups = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
      wakeups += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    }
    return { syscalls: field("syscr") + field("syscw"), wakeups };
  } catch {
    return { syscalls: NaN, wakeups: NaN }; // already gone
  }
}

const sumEvents = (pids) => pids.reduce((t, p) => {
  const e = processEvents(p);
  return { syscalls: t.syscalls + e.syscalls, wakeups: t.wakeups + e.wakeups };
}, { syscalls: 0, wakeups: 0 });

/** A point-in-time reading; pids is { caller, service, server }, a role may be several pids (summed). */
export function cpuSnapshot(pids) {
  const { busy, steal } = systemTicks();
  return {
    at: performance.now(),
    system: busy,
    steal,
    procs: Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, [pid].flat().reduce((t, p) => t + processTicks(p), 0)])),
    events: Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, sumEvents([pid].flat())])),
  };
}

/**
 * CPU µs per call for each process, and cores used by everything else between two
 * snapshots; `stealCores` is the CPU the hypervisor took from this VM meanwhile (a busy
 * host rather than a busy neighbour: it slows every process). Steal is counted in
 * otherCores too, but the machine's and the processes' tick counts are read separately,
 * so the two can disagree by a few hundredths of a core.
 */
export function cpuWindow(a, b, calls) {
  if (!a || !b || calls === 0) return null;
  const perCallUs = {};
  const syscallsPerCall = {};
  const wakeupsPerCall = {};
  const per = (n) => (Number.isFinite(n) ? Math.round((n / calls) * 100) / 100 : null);
  for (const role of Object.keys(a.events ?? {})) {
    syscallsPerCall[role] = per(b.events[role].syscalls - a.events[role].syscalls);
    wakeupsPerCall[role] = per(b.events[role].wakeups - a.events[role].wakeups);
  }
  let ours = 0;
  for (const role of Object.keys(a.procs)) {
    const ticks = b.procs[role] - a.procs[role];
    if (!Number.isFinite(ticks)) {
      perCallUs[role] = null; // the process was gone at one of the snapshots
      continue;
    }
    ours += ticks;
    perCallUs[role] = Math.round(((ticks * TICK_MS * 1000) / calls) * 10) / 10;
  }
  const otherMs = (b.system - a.system - ours) * TICK_MS;
  const cores = (ms) => Math.max(0, Math.round((ms / (b.at - a.at)) * 100) / 100);
  return { perCallUs, syscallsPerCall, wakeupsPerCall, otherCores: cores(otherMs), stealCores: cores((b.steal - a.steal) * TICK_MS) };
}

/** Resident memory of processes, summed, in MB (VmRSS of /proc/<pid>/status). */
export function rssMb(pids) {
  const kb = [pids].flat().reduce((sum, pid) => sum + Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]), 0);
  return Math.round(kb / 1024);
}
