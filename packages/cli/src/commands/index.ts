// Every command, one file each. A new command: add its file and one line here.
import type { Command } from "commander";
import { registerApply } from "./apply.js";
import { registerCall } from "./call.js";
import { registerEvents } from "./events.js";
import { registerIdentity } from "./identity.js";
import { registerLs } from "./ls.js";
import { registerPolicy } from "./policy.js";
import { registerNatsConfig } from "./nats-config.js";

export const commands: ReadonlyArray<(program: Command) => void> = [registerLs, registerCall, registerEvents, registerIdentity, registerNatsConfig, registerApply, registerPolicy];
