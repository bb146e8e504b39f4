// Row "tracing100": see tracing.mjs.
import { tracingRow } from "./tracing.mjs";

export const { serve, caller } = tracingRow(1);
