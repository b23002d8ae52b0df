/**
 * Explanation methods (the `methods` trait): validation, grouping by family, and the
 * description of the parameter form, as pure functions (no DOM) so they are unit-tested.
 */
import { DEFAULT_METHOD } from "./protocol";
import type { MethodInfo, MethodParam, ParamValue } from "./types";

export { DEFAULT_METHOD };

/** Families in display order; unknown families follow in order of first appearance. */
export const FAMILY_ORDER: readonly string[] = ["gradient", "perturbation", "cam", "fixations"];

/** Method shown when the kernel says nothing else (docs/protocol.md default). */

/** What the form renders for one parameter. */
export interface ParamControl {
  name: string;
  /** number -> <input type=number>, checkbox -> <input type=checkbox>, select -> <select>. */
  type: "number" | "checkbox" | "select";
  kind: MethodParam["kind"];
  min: number | null;
  max: number | null;
  /** "1" for int, "any" for float, null otherwise. */
  step: string | null;
  /** Current value: a number or null (empty input), a boolean, or one of `choices`. */
  value: number | boolean | string | null;
  choices: string[];
  doc: string;
}

function finiteOrNull(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Keep the well-formed entries of the `methods` trait (defensive: it comes over the wire). */
export function validMethods(raw: unknown): MethodInfo[] {
  if (!Array.isArray(raw)) return [];
  const out: MethodInfo[] = [];
  for (const m of raw) {
    if (!isRecord(m) || typeof m.name !== "string" || m.name === "") continue;
    out.push({
      name: m.name,
      title: typeof m.title === "string" && m.title !== "" ? m.title : m.name,
      family: typeof m.family === "string" && m.family !== "" ? m.family : "other",
      output: m.output === "pixel" ? "pixel" : "layer",
      signed: m.signed === true,
      uses_layer: m.uses_layer === true,
      cost: typeof m.cost === "string" ? m.cost : "",
      summary: typeof m.summary === "string" ? m.summary : "",
      params: Array.isArray(m.params) ? (m.params as MethodParam[]) : [],
    });
  }
  return out;
}

/** Methods grouped by family, families in FAMILY_ORDER then in order of appearance. */
export function groupByFamily(methods: readonly MethodInfo[]): [string, MethodInfo[]][] {
  const groups = new Map<string, MethodInfo[]>();
  for (const family of FAMILY_ORDER) groups.set(family, []);
  for (const m of methods) {
    const list = groups.get(m.family);
    if (list) list.push(m);
    else groups.set(m.family, [m]);
  }
  return [...groups].filter(([, list]) => list.length > 0);
}

/** The first sentence of a summary (up to and including the first ". ", "! " or "? "). */
export function firstSentence(text: string): string {
  const t = text.trim();
  const match = /^.*?[.!?](?=\s|$)/s.exec(t);
  return match ? match[0] : t;
}

/** A value accepted for a parameter, or undefined when it does not fit the parameter. */
function acceptValue(control: ParamControl, v: unknown): ParamControl["value"] | undefined {
  switch (control.type) {
    case "number":
      if (v === null) return null;
      return typeof v === "number" && Number.isFinite(v) ? v : undefined;
    case "checkbox":
      return typeof v === "boolean" ? v : undefined;
    case "select":
      return typeof v === "string" && control.choices.includes(v) ? v : undefined;
  }
}

/**
 * Describe the form controls for a method's `params`. Values come from `values` (the
 * `method_params` trait) when they fit the parameter, otherwise from the parameter's default.
 * Malformed entries (no name, unknown kind) are skipped.
 */
export function paramControls(
  params: unknown,
  values: Record<string, unknown> | null | undefined = {},
): ParamControl[] {
  if (!Array.isArray(params)) return [];
  const current = isRecord(values) ? values : {};
  const out: ParamControl[] = [];
  const seen = new Set<string>();
  for (const p of params) {
    if (!isRecord(p) || typeof p.name !== "string" || p.name === "" || seen.has(p.name)) continue;
    const kind = p.kind;
    if (kind !== "int" && kind !== "float" && kind !== "bool" && kind !== "choice") continue;
    seen.add(p.name);
    const choices = Array.isArray(p.choices)
      ? p.choices.filter((c): c is string => typeof c === "string")
      : [];
    const isNumber = kind === "int" || kind === "float";
    const control: ParamControl = {
      name: p.name,
      type: isNumber ? "number" : kind === "bool" ? "checkbox" : "select",
      kind,
      min: isNumber ? finiteOrNull(p.low) : null,
      max: isNumber ? finiteOrNull(p.high) : null,
      step: kind === "int" ? "1" : kind === "float" ? "any" : null,
      value: null,
      choices: kind === "choice" ? choices : [],
      doc: typeof p.doc === "string" ? p.doc : "",
    };
    const fallback =
      control.type === "checkbox" ? false : control.type === "select" ? (choices[0] ?? "") : null;
    control.value =
      acceptValue(control, current[p.name]) ?? acceptValue(control, p.default) ?? fallback;
    out.push(control);
  }
  return out;
}

/** What the user entered, read: the value to send (undefined: back to the default), or a
 * note saying why it was refused and what is accepted. */
export type ParsedParam = { value: ParamValue | undefined } | { note: string };

/**
 * Read what the user entered (a number input's text, a checkbox's checked state, a select's
 * value). An empty number input means the default. Out-of-range, fractional (for ints) or
 * non-numeric numbers are refused with a note rather than silently changed, so nothing runs
 * with a value the user did not choose.
 */
export function parseParamInput(control: ParamControl, raw: string | boolean): ParsedParam {
  const name = control.name;
  switch (control.type) {
    case "checkbox":
      return { value: typeof raw === "boolean" ? raw : raw === "true" };
    case "select":
      return typeof raw === "string" && control.choices.includes(raw)
        ? { value: raw }
        : { note: `${name}: pick one of ${control.choices.join(", ")}.` };
    case "number": {
      if (typeof raw !== "string" || raw.trim() === "") return { value: undefined };
      const v = Number(raw);
      const range = rangeText(control);
      if (!Number.isFinite(v)) return { note: `${name} must be a number${range && `,${range}`}.` };
      if (control.kind === "int" && !Number.isInteger(v)) {
        return { note: `${name} must be a whole number${range}; ${raw.trim()} was not applied.` };
      }
      const low = control.min !== null && v < control.min;
      const high = control.max !== null && v > control.max;
      if (low || high) return { note: `${name} must be${range}; ${raw.trim()} was not applied.` };
      return { value: v };
    }
  }
}

/** " between 1 and 1000" / " at least 0" / "" for a number control's bounds. */
function rangeText(control: ParamControl): string {
  const { min, max } = control;
  if (min !== null && max !== null) return ` between ${min} and ${max}`;
  if (min !== null) return ` at least ${min}`;
  if (max !== null) return ` at most ${max}`;
  return "";
}

/** `current` with `name` set to `value` (or removed when undefined), as a new object. */
export function mergeParams(
  current: unknown,
  name: string,
  value: ParamValue | undefined,
): Record<string, ParamValue> {
  const next: Record<string, ParamValue> = isRecord(current)
    ? { ...(current as Record<string, ParamValue>) }
    : {};
  if (value === undefined) delete next[name];
  else next[name] = value;
  return next;
}

/** Caption of the overlay for a method's map, e.g. `Grad-CAM for “tabby” at _swish`. */
export function methodCaption(
  methods: readonly MethodInfo[],
  methodName: string,
  classLabel: string,
  camLayer: string,
): string {
  const info = methods.find((m) => m.name === methodName);
  const fallbackName = methodName === "" ? DEFAULT_METHOD : methodName;
  const title = info?.title ?? (fallbackName === DEFAULT_METHOD ? "Grad-CAM" : fallbackName);
  // Unknown methods (no `methods` list yet) are assumed to be layer methods, like Grad-CAM.
  const usesLayer = info ? info.uses_layer : true;
  return `${title} for “${classLabel}”${usesLayer && camLayer !== "" ? ` at ${camLayer}` : ""}`;
}

/**
 * Window positions along one side of `size` pixels, placed as occlusion places them (Captum's
 * convention): every `stride` pixels from 0 until a window reaches the far edge, the last one
 * possibly hanging over it, so every pixel is covered. 0 when the window is larger than the
 * side (occlusion refuses it) or a setting is not a positive whole number.
 */
export function windowPositions(size: number, window: number, stride: number): number {
  if (![size, window, stride].every((v) => Number.isInteger(v) && v > 0)) return 0;
  if (window > size) return 0;
  return Math.ceil((size - window) / stride) + 1;
}

/**
 * The cost shown beside the method picker for the current settings. A method with `window`
 * and `stride` parameters (occlusion) runs one forward pass per window position, so its cost
 * is counted for the set window and stride at the image's size (`imageShape`: the `image`
 * trait's (H, W, 3) shape, the input the model sees); other methods show the registry's text.
 */
export function costHint(
  info: MethodInfo,
  values: Record<string, unknown> | null | undefined,
  imageShape: readonly number[] | null | undefined,
): string {
  const controls = paramControls(info.params, values);
  const setting = (name: string) => controls.find((c) => c.name === name)?.value;
  const window = setting("window");
  const stride = setting("stride");
  const [height, width] = Array.isArray(imageShape) ? imageShape : [];
  if (typeof window !== "number" || typeof stride !== "number") return info.cost;
  if (typeof height !== "number" || typeof width !== "number") return info.cost;
  const size = `${height}×${width} px`;
  if (window > Math.min(height, width)) {
    return `window ${window} is larger than the ${size} input: pick a smaller window`;
  }
  const rows = windowPositions(height, window, stride);
  const columns = windowPositions(width, window, stride);
  if (rows === 0 || columns === 0) return info.cost;
  return (
    `1F + ${rows * columns} forward passes (${rows}×${columns} window positions ` +
    `at ${size}, window ${window}, stride ${stride}), batched`
  );
}
