/**
 * Controls: image source (sample picker, upload) and display settings (opacity, colormap,
 * how signed pixel maps are drawn, grid order). Display settings are written to the model for persistence only; the kernel
 * does no work for them.
 */
import { colormapNames, resolveColormap } from "../colormaps";
import { h } from "../dom";
import { UPLOAD_PREFIX } from "../protocol";
import type { ExplorerModel, MapSign, Message, SortBy, View } from "../types";

export const MAX_UPLOAD_BYTES = 20 * 1024 * 1024;

export interface ControlsOptions {
  /** Show (or clear, with null) a message produced in the browser. */
  notify(message: Message | null): void;
}

export interface ControlsView extends View {
  readonly source: HTMLElement;
  readonly display: HTMLElement;
}

function syncOptions(select: HTMLSelectElement, values: string[], labels: string[]): void {
  const same =
    select.options.length === values.length &&
    values.every((v, i) => select.options[i]?.value === v && select.options[i]?.text === labels[i]);
  if (same) return;
  select.replaceChildren(...values.map((v, i) => h("option", { value: v }, labels[i] ?? v)));
}

export function createControls(model: ExplorerModel, options: ControlsOptions): ControlsView {
  const imageSelect = h("select", {
    class: "cv-select",
    "data-testid": "image-select",
    "aria-label": "sample image",
  });
  const upload = h("input", {
    type: "file",
    accept: "image/*",
    class: "cv-upload-input",
    "data-testid": "upload",
    "aria-label": "upload an image",
  });
  const opacity = h("input", {
    type: "range",
    min: 0,
    max: 1,
    step: 0.05,
    class: "cv-range",
    "data-testid": "opacity",
    "aria-label": "heatmap opacity",
  });
  const opacityValue = h("output", { class: "cv-range-value" });
  const colormap = h("select", {
    class: "cv-select",
    "data-testid": "colormap",
    "aria-label": "colormap",
  });
  const sign = h(
    "select",
    {
      class: "cv-select",
      "data-testid": "map-sign",
      "aria-label": "how signed pixel maps are drawn",
      title: "signed pixel maps (gradients, Integrated Gradients, occlusion): |value| or signed",
    },
    h("option", { value: "absolute" }, "|value|"),
    h("option", { value: "signed" }, "signed (− / +)"),
  );
  const sort = h(
    "select",
    { class: "cv-select", "data-testid": "sort", "aria-label": "filter order" },
    h("option", { value: "index" }, "channel index"),
    h("option", { value: "mean" }, "mean activation ↓"),
  );

  const source = h(
    "div",
    { class: "cv-controls cv-source" },
    h("label", { class: "cv-field" }, h("span", {}, "Image"), imageSelect),
    h("label", { class: "cv-field cv-upload" }, h("span", {}, "Upload"), upload),
  );
  const display = h(
    "div",
    { class: "cv-controls cv-display" },
    h("label", { class: "cv-field" }, h("span", {}, "Opacity"), opacity, opacityValue),
    h("label", { class: "cv-field" }, h("span", {}, "Colormap"), colormap),
    h("label", { class: "cv-field" }, h("span", {}, "Pixel maps"), sign),
    h("label", { class: "cv-field" }, h("span", {}, "Order"), sort),
  );
  const el = h("div", { class: "cv-controls-wrap" }, source, display);

  let saveTimer: ReturnType<typeof setTimeout> | undefined;
  function saveSoon(): void {
    if (saveTimer !== undefined) clearTimeout(saveTimer);
    saveTimer = setTimeout(() => {
      saveTimer = undefined;
      model.save_changes();
    }, 150);
  }
  function saveNow(): void {
    if (saveTimer !== undefined) clearTimeout(saveTimer);
    saveTimer = undefined;
    model.save_changes();
  }

  imageSelect.addEventListener("change", () => {
    const value = imageSelect.value;
    if (value === "" || value === model.get("image_name")) return;
    model.set("image_name", value);
    model.save_changes();
  });

  upload.addEventListener("change", async () => {
    const file = upload.files?.[0];
    upload.value = ""; // the same file can be picked again
    if (file === undefined) return;
    if (file.size > MAX_UPLOAD_BYTES) {
      options.notify({
        level: "error",
        text: `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${
          MAX_UPLOAD_BYTES / 1048576
        } MB.`,
      });
      return;
    }
    try {
      const buffer = await file.arrayBuffer();
      options.notify(null);
      model.send({ type: "upload", name: file.name }, undefined, [buffer]);
    } catch (err) {
      options.notify({
        level: "error",
        text: `Cannot read ${file.name}: ${(err as Error).message}`,
      });
    }
  });

  // Opacity: redraw on every input event, tell the kernel at most every 150 ms.
  opacity.addEventListener("input", () => {
    const value = Number(opacity.value);
    if (!Number.isFinite(value)) return;
    model.set("opacity", value);
    saveSoon();
  });
  opacity.addEventListener("change", saveNow);

  colormap.addEventListener("change", () => {
    model.set("colormap", colormap.value);
    model.save_changes();
  });

  sign.addEventListener("change", () => {
    model.set("map_sign", sign.value as MapSign);
    model.save_changes();
  });

  sort.addEventListener("change", () => {
    model.set("sort_by", sort.value as SortBy);
    model.save_changes();
  });

  return {
    el,
    source,
    display,
    update() {
      // Image picker: sample names, plus the current upload (or unknown name) when not a sample.
      const names = Array.isArray(model.get("image_names"))
        ? model.get("image_names").filter((n): n is string => typeof n === "string")
        : [];
      const current = model.get("image_name") ?? "";
      const values = [...names];
      const labels = [...names];
      if (current !== "" && !names.includes(current)) {
        values.push(current);
        labels.push(
          current.startsWith(UPLOAD_PREFIX) ? `⤒ ${current.slice(UPLOAD_PREFIX.length)}` : current,
        );
      }
      syncOptions(imageSelect, values, labels);
      imageSelect.value = current;

      const op = Number(model.get("opacity"));
      const opClamped = Number.isFinite(op) ? Math.max(0, Math.min(1, op)) : 0.5;
      if (Number(opacity.value) !== opClamped) opacity.value = String(opClamped);
      opacityValue.value = `${Math.round(opClamped * 100)}%`;

      const cmap = model.get("colormap") ?? "viridis";
      const cmapValues: string[] = [...colormapNames];
      const cmapLabels: string[] = [...colormapNames];
      if (!cmapValues.includes(cmap)) {
        const resolved = resolveColormap(cmap);
        cmapValues.push(cmap);
        cmapLabels.push(resolved === null ? `${cmap} (unknown)` : `${cmap} (= ${resolved})`);
      }
      syncOptions(colormap, cmapValues, cmapLabels);
      colormap.value = cmap;

      sort.value = model.get("sort_by") === "mean" ? "mean" : "index";
      sign.value = model.get("map_sign") === "signed" ? "signed" : "absolute";
    },
    destroy() {
      if (saveTimer !== undefined) {
        clearTimeout(saveTimer);
        saveTimer = undefined;
        try {
          model.save_changes();
        } catch {
          // the model may already be closed
        }
      }
    },
  };
}
