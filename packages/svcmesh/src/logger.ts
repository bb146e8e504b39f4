import { pino, type Logger } from "pino";

/** The default logger: pino to stdout at `level`, else SVCMESH_LOG_LEVEL, else "info". */
export function defaultLogger(name: string, level?: string): Logger {
  return pino({ name, level: level ?? process.env.SVCMESH_LOG_LEVEL ?? "info" });
}
