/**
 * Explanation method picker (grouped by family) and a parameter form generated from the
 * selected method's `params`. Picking a method writes `method` and resets `method_params` in
 * one save; a parameter's "change" event merges its value into `method_params` and saves.
 */
import { h, setText } from "../dom";
import {
  costHint,
  DEFAULT_METHOD,
  firstSentence,
  groupByFamily,
  mergeParams,
  type ParamControl,
  paramControls,
  parseParamInput,
  validMethods,
} from "../methods";
import type { ExplorerModel, MethodInfo, ParamValue, View } from "../types";

let instances = 0;

export function controlElement(
  control: ParamControl,
  id: string,
): HTMLInputElement | HTMLSelectElement {
  const common = {
    id,
    class: control.type === "checkbox" ? "cv-param-input" : "cv-select cv-param-input",
    "data-param": control.name,
    title: control.doc || null,
  };
  if (control.type === "select") {
    return h("select", common, ...control.choices.map((c) => h("option", { value: c }, c)));
  }
  if (control.type === "checkbox") return h("input", { ...common, type: "checkbox" });
  // Wide enough for the longest allowed value (a 10-digit seed), at least 7 characters.
  const digits = Math.max(String(control.max ?? "").length, String(control.value ?? "").length);
  return h("input", {
    ...common,
    type: "number",
    min: control.min,
    max: control.max,
    step: control.step,
    style: `width: ${Math.max(7, digits + 3)}ch`,
  });
}

/** Show a control's value in its element (only when it differs: no caret jumps). */
export function showValue(el: HTMLInputElement | HTMLSelectElement, control: ParamControl): void {
  if (el instanceof HTMLInputElement && el.type === "checkbox") {
    el.checked = control.value === true;
    return;
  }
  const text = control.value === null ? "" : String(control.value);
  if (el instanceof HTMLInputElement && el.value !== "" && Number(el.value) === control.value) {
    return; // "0.50" vs 0.5: same number, keep what the user typed
  }
  if (el.value !== text) el.value = text;
}

export interface ParamInput {
  control: ParamControl;
  el: HTMLInputElement | HTMLSelectElement;
}

/** A form note (`role=status`) saying why the last value entered was refused. */
export function paramNote(testid: string): HTMLElement {
  return h("div", { class: "cv-param-note", role: "status", "data-testid": testid });
}

/**
 * The params trait's next value after `entry`'s control changed (`current`: the trait now),
 * or null when the value was refused: the field is marked invalid, `note` says why and what
 * is accepted, and nothing is sent.
 */
export function readParamChange(
  entry: ParamInput,
  current: unknown,
  note: HTMLElement,
): Record<string, ParamValue> | null {
  const input = entry.el;
  const raw =
    input instanceof HTMLInputElement && input.type === "checkbox" ? input.checked : input.value;
  const parsed = parseParamInput(entry.control, raw);
  const refused = "note" in parsed;
  input.setAttribute("aria-invalid", String(refused));
  setText(note, refused ? parsed.note : "");
  return refused ? null : mergeParams(current, entry.control.name, parsed.value);
}

export function createMethodControls(model: ExplorerModel): View {
  const uid = ++instances;
  const select = h("select", {
    class: "cv-select cv-method-select",
    "data-testid": "method-select",
    "aria-label": "explanation method",
  });
  const cost = h("span", { class: "cv-method-cost", "data-testid": "method-cost" });
  const form = h("div", { class: "cv-method-params", "data-testid": "method-params" });
  const note = paramNote("method-params-note");
  const el = h(
    "div",
    { class: "cv-methods", "data-testid": "methods" },
    h(
      "div",
      { class: "cv-controls" },
      h("label", { class: "cv-field" }, h("span", {}, "Method"), select),
      cost,
    ),
    form,
    note,
  );

  let methods: MethodInfo[] = [];
  let shownMethodsRaw: unknown;
  let optionsKey = "";
  let formKey: unknown[] = [];
  let inputs: ParamInput[] = [];

  select.addEventListener("change", () => {
    const value = select.value;
    if (value === "" || value === model.get("method")) return;
    model.set("method", value);
    model.set("method_params", {});
    model.set("overlay_source", "map");
    model.save_changes();
  });

  form.addEventListener("change", (event) => {
    const target = event.target as Element;
    const entry = inputs.find((i) => i.el === target);
    if (entry === undefined) return;
    const { control, el: input } = entry;
    const next = readParamChange(entry, model.get("method_params"), note);
    if (next === null) return;
    // Show the value that was actually sent (back to the default when emptied).
    const shown = paramControls([paramOf(control.name)], next)[0];
    if (shown !== undefined) {
      entry.control = shown;
      showValue(input, shown);
    }
    model.set("method_params", next);
    model.set("overlay_source", "map");
    model.save_changes();
  });

  function currentMethod(): MethodInfo | undefined {
    const name = model.get("method") || DEFAULT_METHOD;
    return methods.find((m) => m.name === name);
  }

  function paramOf(name: string): unknown {
    return currentMethod()?.params.find((p) => p?.name === name);
  }

  function syncSelect(current: string): void {
    const known = methods.some((m) => m.name === current);
    const key = `${methods.map((m) => `${m.family}/${m.name}/${m.title}`).join("|")}#${
      known ? "" : current
    }`;
    if (key !== optionsKey) {
      optionsKey = key;
      const children: HTMLElement[] = groupByFamily(methods).map(([family, list]) =>
        h(
          "optgroup",
          { label: family },
          ...list.map((m) => h("option", { value: m.name }, m.title)),
        ),
      );
      if (!known && current !== "") {
        children.push(h("option", { value: current }, `${current} (unknown)`));
      }
      select.replaceChildren(...children);
    }
    select.value = current;
  }

  function rebuildForm(info: MethodInfo | undefined): void {
    const controls = paramControls(info?.params, model.get("method_params"));
    inputs = controls.map((control, i) => ({
      control,
      el: controlElement(control, `cv-m${uid}-p${i}`),
    }));
    setText(note, "");
    if (inputs.length === 0) {
      form.replaceChildren(h("span", { class: "cv-muted" }, "no parameters"));
      return;
    }
    form.replaceChildren(
      ...inputs.map(({ control, el: input }) =>
        h(
          "div",
          { class: `cv-param cv-param-${control.type}` },
          h("label", { for: input.id, title: control.doc || null }, control.name),
          input,
        ),
      ),
    );
  }

  return {
    el,
    update() {
      const raw = model.get("methods");
      if (raw !== shownMethodsRaw) {
        shownMethodsRaw = raw;
        methods = validMethods(raw);
      }
      const current = model.get("method") || DEFAULT_METHOD;
      syncSelect(current);
      const info = currentMethod();
      select.title = info ? firstSentence(info.summary) : "";
      const image = model.get("image");
      setText(
        cost,
        info === undefined ? "" : costHint(info, model.get("method_params"), image?.shape),
      );

      const key = [raw, current];
      if (key.some((k, i) => k !== formKey[i])) {
        formKey = key;
        rebuildForm(info);
      }
      // Values from the model (e.g. reset to {} or clamped by the kernel).
      const controls = paramControls(info?.params, model.get("method_params"));
      for (const entry of inputs) {
        const control = controls.find((c) => c.name === entry.control.name);
        if (control === undefined) continue;
        entry.control = control;
        showValue(entry.el, control);
      }
    },
  };
}
