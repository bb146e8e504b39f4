// Every command, one file each. A new command: add its file and one line here.
import type { Command } from "commander";
import { registerApply } from "./apply.js";
import { registerAudit } from "./audit.js";
import { registerCall } from "./call.js";
import { registerDoctor } from "./doctor.js";
import { registerEvents } from "./events.js";
import { registerIdentity } from "./identity.js";
import { registerInfo } from "./info.js";
import { registerLs } from "./ls.js";
import { registerPolicy } from "./policy.js";
import { registerNatsConfig } from "./nats-config.js";
import { registerTop } from "./top.js";
import { registerWatch } from "./watch.js";

export const commands: ReadonlyArray<(program: Command) => void> = [
  registerLs,
  registerInfo,
  registerCall,
  registerWatch,
  registerTop,
  registerEvents,
  registerAudit,
  registerIdentity,
  registerNatsConfig,
  registerApply,
  registerPolicy,
  registerDoctor,
];
