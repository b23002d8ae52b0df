/** Top-5 predictions as buttons (label + probability bar); a click picks the explained class. */
import { formatPercent, h, setText } from "../dom";
import type { ExplorerModel, Prediction, View } from "../types";

function isPrediction(p: unknown): p is Prediction {
  if (p === null || typeof p !== "object") return false;
  const { index, label, prob } = p as Record<string, unknown>;
  return typeof index === "number" && typeof label === "string" && typeof prob === "number";
}

/** What a class search found: the class, or why none (a sentence naming the fix). */
export type ClassSearch = { index: number; note: "" } | { index: null; note: string };

const SHOWN_MATCHES = 4;

/**
 * The class a search text names: "281", "281: tabby", or a label (case-insensitive, exact
 * first, then the only label that contains the text). Otherwise a note saying what was wrong
 * and what to type instead (empty text: no class and no note).
 */
export function searchClass(text: string, labels: readonly string[]): ClassSearch {
  const query = text.trim();
  if (query === "") return { index: null, note: "" };
  const last = labels.length - 1;
  const numbered = /^(\d+)\s*(?::.*)?$/.exec(query);
  if (numbered) {
    const index = Number(numbered[1]);
    if (index <= last) return { index, note: "" };
    return { index: null, note: `there is no class ${index}: indices run from 0 to ${last}.` };
  }
  const lower = query.toLowerCase();
  const exact = labels.findIndex((label) => label.toLowerCase() === lower);
  if (exact >= 0) return { index: exact, note: "" };
  const partial = labels.flatMap((label, i) => (label.toLowerCase().includes(lower) ? [i] : []));
  if (partial.length === 1) return { index: partial[0] as number, note: "" };
  if (partial.length === 0) {
    return {
      index: null,
      note: `no class name contains “${query}”: type part of a name or an index from 0 to ${last}.`,
    };
  }
  const some = partial.slice(0, SHOWN_MATCHES).map((i) => `${i}: ${labels[i]}`);
  const more = partial.length > SHOWN_MATCHES ? ", …" : "";
  return {
    index: null,
    note: `“${query}” is in ${partial.length} class names (${some.join(", ")}${more}): type more of the name, or pick one from the list.`,
  };
}

/** The class index a search text names, or null (see {@link searchClass}). */
export function findClass(text: string, labels: readonly string[]): number | null {
  return searchClass(text, labels).index;
}

/** Explain class `index`: the overlay goes back to the method's map (from a channel). */
export function pickClass(model: ExplorerModel, index: number): void {
  model.set("selected_class", index);
  model.set("overlay_source", "map");
  model.save_changes();
}

let datalistCount = 0;

export function createPredictions(model: ExplorerModel): View {
  const list = h("div", { class: "cv-predictions-list", role: "group" });
  datalistCount += 1;
  const options = h("datalist", { id: `cv-class-names-${datalistCount}` });
  const search = h("input", {
    type: "search",
    class: "cv-class-search",
    "data-testid": "class-search",
    list: options.id,
    placeholder: "any class: type a name or index",
    "aria-label": "explain any class",
  });
  const note = h("div", {
    class: "cv-search-note",
    role: "status",
    "data-testid": "class-search-note",
  });
  const el = h(
    "div",
    { class: "cv-predictions", "data-testid": "predictions" },
    h("div", { class: "cv-section-title" }, "Predictions"),
    list,
    search,
    note,
    options,
  );
  let shown: unknown;
  let shownLabels: unknown;
  let labels: string[] = [];

  /** Pick the class the search field names, or say in the note why none was picked. */
  function pickSearched(): void {
    const found = searchClass(search.value, labels);
    search.setAttribute("aria-invalid", found.note === "" ? "false" : "true");
    setText(note, found.note);
    if (found.index === null) return;
    searched = found.index;
    pickClass(model, found.index);
  }
  search.addEventListener("change", pickSearched);
  // Enter picks too (a "change" does not always follow it, e.g. with the same text again);
  // it stops here so that the notebook around the widget does not act on the key.
  search.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    event.preventDefault();
    event.stopPropagation();
    pickSearched();
  });
  /** The class the search field last picked: the field is cleared once another is picked. */
  let searched: number | null = null;
  let buttons: HTMLButtonElement[] = [];

  list.addEventListener("click", (event) => {
    const button = (event.target as Element).closest<HTMLButtonElement>(
      'button[data-testid="prediction"]',
    );
    if (button === null || !list.contains(button)) return;
    const index = Number(button.dataset.index);
    if (!Number.isInteger(index)) return;
    pickClass(model, index);
  });

  function rebuild(predictions: Prediction[]): void {
    buttons = predictions.map((p) => {
      const bar = h("span", { class: "cv-bar" });
      bar.style.width = `${Math.max(0, Math.min(1, p.prob)) * 100}%`;
      return h(
        "button",
        {
          type: "button",
          class: "cv-prediction",
          "data-testid": "prediction",
          "data-index": p.index,
          "data-selected": "false",
          title: `class ${p.index}: ${p.label} (${formatPercent(p.prob)})`,
        },
        h("span", { class: "cv-bar-track" }, bar),
        h("span", { class: "cv-pred-label" }, p.label),
        h("span", { class: "cv-pred-prob" }, formatPercent(p.prob)),
      );
    });
    list.replaceChildren(...buttons);
    if (buttons.length === 0) list.append(h("span", { class: "cv-empty" }, "no predictions"));
  }

  return {
    el,
    update() {
      const rawLabels = model.get("labels");
      if (rawLabels !== shownLabels) {
        shownLabels = rawLabels;
        labels = Array.isArray(rawLabels) ? rawLabels.map(String) : [];
        options.replaceChildren(
          ...labels.map((label, i) => {
            const option = h("option");
            option.value = `${i}: ${label}`;
            return option;
          }),
        );
      }
      const raw = model.get("predictions");
      if (raw !== shown) {
        shown = raw;
        rebuild(Array.isArray(raw) ? raw.filter(isPrediction) : []);
      }
      const selected = model.get("selected_class");
      if (searched !== null && selected !== searched) {
        searched = null;
        search.value = "";
        search.setAttribute("aria-invalid", "false");
        setText(note, "");
      }
      for (const button of buttons) {
        const on = Number(button.dataset.index) === selected;
        button.dataset.selected = on ? "true" : "false";
        button.setAttribute("aria-pressed", on ? "true" : "false");
      }
    },
  };
}
