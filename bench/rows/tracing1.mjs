// Row "tracing1": see tracing.mjs.
import { tracingRow } from "./tracing.mjs";

export const { serve, caller } = tracingRow(0.01);
