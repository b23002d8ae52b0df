/**
 * Main canvas: the image with the Grad-CAM heatmap on top, or with the selected channel's map
 * when `selected_channel >= 0`; a caption says what is drawn, a colour bar shows the colormap.
 */
import { composite, type Heat, heatByMax, mapFrom } from "../canvas";
import { getLut, type Lut } from "../colormaps";
import { h, setText } from "../dom";
import type { ArrayStore } from "../store";
import type { ExplorerModel, View } from "../types";
import { channelHeat } from "./filterGrid";

function drawColorbar(canvas: HTMLCanvasElement, lut: Lut): void {
  const n = lut.length / 3;
  canvas.width = n;
  canvas.height = 1;
  const ctx = canvas.getContext("2d");
  if (ctx === null) return;
  const img = ctx.createImageData(n, 1);
  for (let i = 0; i < n; i++) {
    img.data[4 * i] = lut[3 * i] as number;
    img.data[4 * i + 1] = lut[3 * i + 1] as number;
    img.data[4 * i + 2] = lut[3 * i + 2] as number;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

export function createOverlay(model: ExplorerModel, arrays: ArrayStore): View {
  const canvas = h("canvas", {
    class: "cv-overlay-canvas",
    "data-testid": "overlay",
    width: 224,
    height: 224,
    role: "img",
  });
  const caption = h("div", { class: "cv-overlay-caption" });
  const colorbar = h("canvas", { class: "cv-colorbar", "aria-hidden": "true" });
  const el = h(
    "div",
    { class: "cv-overlay" },
    canvas,
    h("div", { class: "cv-colorbar-row" }, h("span", {}, "low"), colorbar, h("span", {}, "high")),
    caption,
  );
  let colorbarLut: Lut | null = null;

  function labelOf(index: number): string {
    const predictions = model.get("predictions");
    const p = Array.isArray(predictions) ? predictions.find((q) => q?.index === index) : undefined;
    return p && typeof p.label === "string" ? p.label : `class ${index}`;
  }

  return {
    el,
    update() {
      const lut = getLut(model.get("colormap") ?? "viridis");
      if (lut !== colorbarLut) {
        drawColorbar(colorbar, lut);
        colorbarLut = lut;
      }
      const image = arrays.get("image");
      const channel = model.get("selected_channel");
      const grid = arrays.get("grid");
      const cam = arrays.get("cam");
      const camLayer = model.get("cam_layer") ?? "";
      const cls = model.get("selected_class");

      let heat: Heat | null = null;
      let mode: "image" | "cam" | "channel" = "image";
      let text: string;
      const channelMap =
        Number.isInteger(channel) && channel >= 0 && grid !== null
          ? channelHeat(grid, channel)
          : null;
      if (channelMap !== null) {
        heat = channelMap;
        mode = "channel";
        text = `channel ${channel} of ${model.get("grid_layer") ?? ""}`;
      } else {
        const camMap = cam === null ? null : mapFrom(cam);
        heat = camMap === null ? null : heatByMax(camMap);
        mode = camMap === null ? "image" : "cam";
        if (camMap === null) text = image === null ? "no image" : "image";
        else
          text =
            `Grad-CAM for “${labelOf(cls)}” at ${camLayer}` +
            (heat === null ? " (no positive evidence)" : "");
      }
      composite(canvas, image, heat, model.get("opacity"), lut);

      canvas.dataset.mode = mode;
      canvas.dataset.camLayer = cam === null ? "" : camLayer;
      canvas.dataset.class = String(cls);
      canvas.dataset.channel = mode === "channel" ? String(channel) : "-1";
      canvas.dataset.camEmpty = mode === "cam" && heat === null ? "true" : "false";
      canvas.setAttribute("aria-label", text);
      setText(caption, text);
    },
  };
}
