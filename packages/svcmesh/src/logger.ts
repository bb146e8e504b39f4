import { pino, type Logger } from "pino";

/** The default logger: pino at SVCMESH_LOG_LEVEL (default "info"). */
export function defaultLogger(name: string): Logger {
  return pino({ name, level: process.env.SVCMESH_LOG_LEVEL ?? "info" });
}
