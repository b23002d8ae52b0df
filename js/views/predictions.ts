/** Top-5 predictions as buttons (label + probability bar); a click picks the explained class. */
import { formatPercent, h } from "../dom";
import type { ExplorerModel, Prediction, View } from "../types";

function isPrediction(p: unknown): p is Prediction {
  if (p === null || typeof p !== "object") return false;
  const { index, label, prob } = p as Record<string, unknown>;
  return typeof index === "number" && typeof label === "string" && typeof prob === "number";
}

export function createPredictions(model: ExplorerModel): View {
  const list = h("div", { class: "cv-predictions-list", role: "group" });
  const el = h(
    "div",
    { class: "cv-predictions", "data-testid": "predictions" },
    h("div", { class: "cv-section-title" }, "Predictions"),
    list,
  );
  let shown: unknown;
  let buttons: HTMLButtonElement[] = [];

  list.addEventListener("click", (event) => {
    const button = (event.target as Element).closest<HTMLButtonElement>(
      'button[data-testid="prediction"]',
    );
    if (button === null || !list.contains(button)) return;
    const index = Number(button.dataset.index);
    if (!Number.isInteger(index)) return;
    model.set("selected_class", index);
    model.save_changes();
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
      const raw = model.get("predictions");
      if (raw !== shown) {
        shown = raw;
        rebuild(Array.isArray(raw) ? raw.filter(isPrediction) : []);
      }
      const selected = model.get("selected_class");
      for (const button of buttons) {
        const on = Number(button.dataset.index) === selected;
        button.dataset.selected = on ? "true" : "false";
        button.setAttribute("aria-pressed", on ? "true" : "false");
      }
    },
  };
}
