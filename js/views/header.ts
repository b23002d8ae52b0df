/** Title bar: widget title, model name and a slot for the busy indicator. */
import { h, setText } from "../dom";
import type { ExplorerModel, View } from "../types";

export function createHeader(model: ExplorerModel, busy: HTMLElement): View {
  const name = h("span", { class: "cv-model-name", "data-testid": "model-name" });
  const el = h(
    "div",
    { class: "cv-header" },
    h("span", { class: "cv-title" }, "CNN explorer"),
    name,
    h("span", { class: "cv-spacer" }),
    busy,
  );
  return {
    el,
    update() {
      setText(name, model.get("model_name") ?? "");
    },
  };
}
