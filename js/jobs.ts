/**
 * Background jobs as the kernel reports them (`overlay_job`, `compare_job`, ...; docs/protocol.md) and
 * the comparison panel's pure logic: how many maps a selection gives, score text.
 */
import { formatNumber } from "./dom";
import { MAX_COMPARED, MIN_COMPARED } from "./protocol";
import type { JobInfo, MethodInfo } from "./types";

export type JobState = "running" | "done" | "cancelled" | "error";

export interface JobView {
  id: number;
  state: JobState | "idle";
  fraction: number;
  running: boolean;
  text: string;
}

const STATES: readonly string[] = ["running", "done", "cancelled", "error"];

/** A validated view of a job trait; anything malformed reads as "idle". */
export function jobView(raw: unknown): JobView {
  const job = raw as Partial<JobInfo> | null | undefined;
  if (job === null || typeof job !== "object" || !STATES.includes(String(job.state))) {
    return { id: 0, state: "idle", fraction: 0, running: false, text: "" };
  }
  const state = job.state as JobState;
  const fraction = Number.isFinite(job.fraction)
    ? Math.max(0, Math.min(1, Number(job.fraction)))
    : 0;
  const percent = `${Math.round(100 * fraction)}%`;
  const label = typeof job.label === "string" ? job.label : "";
  const text =
    state === "running"
      ? `${label}: ${percent}`
      : state === "cancelled"
        ? `${label}: stopped at ${percent}`
        : state === "error"
          ? `${label}: failed${typeof job.error === "string" && job.error ? `: ${job.error}` : ""}`
          : `${label}: done`;
  const id = Number.isInteger(job.id) ? Number(job.id) : 0;
  return { id, state, fraction, running: state === "running", text };
}

export { MAX_COMPARED };

/** Number of maps a comparison of `picked` methods at `layers` gives (as the kernel counts:
 * each layer method once per chosen layer, or once at the overlay's layer; pixel methods once). */
export function comparisonCount(
  methods: readonly MethodInfo[],
  picked: readonly string[],
  layers: readonly string[],
): number {
  let count = 0;
  for (const name of new Set(picked)) {
    const info = methods.find((m) => m.name === name);
    if (info === undefined) continue;
    count += info.uses_layer ? Math.max(1, layers.length) : 1;
  }
  return count;
}

/** "3 maps" / a hint saying what to change, and whether the selection can run. */
export function comparisonHint(count: number): { ok: boolean; text: string } {
  if (count < MIN_COMPARED) {
    return {
      ok: false,
      text: `pick ${MIN_COMPARED} or more methods, or one layer method and ${MIN_COMPARED} or more layers`,
    };
  }
  if (count > MAX_COMPARED) {
    return { ok: false, text: `${count} maps: pick at most ${MAX_COMPARED}` };
  }
  return { ok: true, text: `${count} maps` };
}

/** Deletion / insertion areas as shown under a comparison cell ("–" while not computed). */
export function scoreText(deletion: unknown, insertion: unknown): string {
  const d = typeof deletion === "number" ? formatNumber(deletion) : "–";
  const i = typeof insertion === "number" ? formatNumber(insertion) : "–";
  return `deletion ${d} ↓ · insertion ${i} ↑`;
}
