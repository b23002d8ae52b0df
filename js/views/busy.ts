/** Busy indicator: a spinner shown while the kernel computes (`busy` trait). */
import { h, setText } from "../dom";
import type { ExplorerModel, View } from "../types";

export function createBusy(model: ExplorerModel): View {
  const label = h("span", { class: "cv-busy-label" });
  const el = h(
    "span",
    { class: "cv-busy", "data-testid": "busy", "data-busy": "false", role: "status" },
    h("span", { class: "cv-spinner", "aria-hidden": "true" }),
    label,
  );
  return {
    el,
    update() {
      const busy = model.get("busy") === true;
      el.dataset.busy = busy ? "true" : "false";
      el.setAttribute("aria-busy", busy ? "true" : "false");
      setText(label, busy ? "computing…" : "");
    },
  };
}
