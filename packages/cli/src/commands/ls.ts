// svcmesh ls: which services run, in which versions, on how many instances.
import type { Command } from "commander";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { DISCOVERY_MAX_WAIT_MS, discover } from "../discovery.js";
import { globalOptions, positiveInteger } from "../options.js";
import { formatTable, printJson, printLine } from "../output.js";

interface LsOptions {
  wait: number;
}

export function registerLs(program: Command): void {
  program
    .command("ls")
    .description("list running services by version: instance count and endpoints")
    .option("--wait <ms>", "longest time to wait for instances to answer", positiveInteger, DISCOVERY_MAX_WAIT_MS)
    .addHelpText("after", `
Instances are found with the NATS services protocol ($SRV.INFO); only svcmesh
services are listed. With --json: [{service, version, instances: [ids], endpoints: [names]}].

Example:
  $ svcmesh ls
  SERVICE   VERSION  INSTANCES  ENDPOINTS
  payments  2.1.0    2          refund, reimburse`)
    .action(async (opts: LsOptions, command: Command) => {
      const globals = globalOptions(command);
      const groups = await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => discover(mesh.nc, opts.wait));
      if (globals.json) return printJson(groups, false);
      if (groups.length === 0) return printLine("no services running");
      printLine(formatTable(
        ["SERVICE", "VERSION", "INSTANCES", "ENDPOINTS"],
        groups.map((g) => [g.service, g.version, String(g.instances.length), g.endpoints.join(", ")]),
      ));
    });
}
