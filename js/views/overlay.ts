/**
 * Main canvas: the image with the current method's map (`cam`) on top, or with the selected
 * channel's map when `overlay_source` is "channel" (a tile click; any request for a map sets
 * it back to "map"); a caption says what is drawn, a colour bar shows the colormap, and the
 * map's note (e.g. "the rule found no ReLU modules") is shown under it as text. Signed maps
 * (`overlay_signed`) are drawn as |value| with the user colormap or, with `map_sign` "signed",
 * with the diverging RdBu map, symmetric around 0 (see `heatPixel`).
 */
import { composite, type Heat, heatByMax, heatPixel, mapFrom } from "../canvas";
import { getLut, type Lut, SIGNED_COLORMAP } from "../colormaps";
import { h, setText } from "../dom";
import { jobView } from "../jobs";
import { classLabel } from "../labels";
import { methodCaption, validMethods } from "../methods";
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

/** The note a map payload carries (why the map is not what its method promises), or "". */
export function mapNote(payload: unknown): string {
  if (payload === null || typeof payload !== "object") return "";
  const note = (payload as { note?: unknown }).note;
  return typeof note === "string" ? note : "";
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
  const lowLabel = h("span", { class: "cv-colorbar-low" }, "low");
  const highLabel = h("span", { class: "cv-colorbar-high" }, "high");
  const zeroLabel = h("span", { class: "cv-colorbar-zero", hidden: true }, "0");
  const legend = h(
    "div",
    { class: "cv-colorbar-row", "data-testid": "colorbar", "data-signed": "false" },
    lowLabel,
    h("div", { class: "cv-colorbar-track" }, colorbar, zeroLabel),
    highLabel,
  );
  const note = h("div", {
    class: "cv-overlay-note",
    role: "note",
    "data-testid": "map-note",
    hidden: true,
  });
  const el = h("div", { class: "cv-overlay" }, canvas, legend, caption, note);
  let colorbarLut: Lut | null = null;
  let methodsRaw: unknown;
  let methods = validMethods([]);

  return {
    el,
    update() {
      const rawMethods = model.get("methods");
      if (rawMethods !== methodsRaw) {
        methodsRaw = rawMethods;
        methods = validMethods(rawMethods);
      }
      const userLut = getLut(model.get("colormap") ?? "viridis");
      const image = arrays.get("image");
      const channel = model.get("selected_channel");
      const grid = arrays.get("grid");
      const cam = arrays.get("overlay_map");
      const camLayer = model.get("overlay_layer") ?? "";
      const cls = model.get("selected_class");
      const camMethod = model.get("overlay_method") ?? "";
      const camSigned = model.get("overlay_signed") === true;
      const sign = model.get("map_sign") === "signed" ? "signed" : "absolute";
      const showChannel = model.get("overlay_source") === "channel";

      let heat: Heat | null = null;
      let mode: "image" | "cam" | "channel" = "image";
      let text: string;
      const channelMap =
        showChannel && Number.isInteger(channel) && channel >= 0 && grid !== null
          ? channelHeat(grid, channel)
          : null;
      if (channelMap !== null) {
        heat = channelMap;
        mode = "channel";
        text = `channel ${channel} of ${model.get("grid_layer") ?? ""}`;
      } else {
        const camMap = cam === null ? null : mapFrom(cam);
        heat = camMap === null ? null : camSigned ? heatPixel(camMap, sign) : heatByMax(camMap);
        mode = camMap === null ? "image" : "cam";
        if (camMap === null) text = image === null ? "no image" : "image";
        else
          text =
            methodCaption(methods, camMethod, classLabel(model, cls), camLayer) +
            (heat === null ? (camSigned ? " (all-zero map)" : " (no positive evidence)") : "");
      }
      const signed = heat?.signed === true;
      const lut = signed ? getLut(SIGNED_COLORMAP) : userLut;
      composite(canvas, image, heat, model.get("opacity"), lut);

      // Legend: the ramp actually drawn (diverging with −/0/+ for signed cam maps).
      const legendSigned = mode === "cam" && camSigned && sign === "signed";
      const legendLut = legendSigned ? getLut(SIGNED_COLORMAP) : userLut;
      if (legendLut !== colorbarLut) {
        drawColorbar(colorbar, legendLut);
        colorbarLut = legendLut;
      }
      setText(lowLabel, legendSigned ? "−" : "low");
      setText(highLabel, legendSigned ? "+" : "high");
      zeroLabel.hidden = !legendSigned;
      legend.dataset.signed = legendSigned ? "true" : "false";

      canvas.dataset.mode = mode;
      canvas.dataset.camLayer = cam === null ? "" : camLayer;
      canvas.dataset.method = cam === null ? "" : camMethod;
      canvas.dataset.signed = legendSigned ? "true" : "false";
      canvas.dataset.class = String(cls);
      canvas.dataset.channel = mode === "channel" ? String(channel) : "-1";
      canvas.dataset.camEmpty = mode === "cam" && heat === null ? "true" : "false";
      // A streamed map still being computed (or stopped before the end) is marked partial.
      const job = jobView(model.get("overlay_job"));
      const partial = mode === "cam" && (job.running || job.state === "cancelled");
      canvas.dataset.partial = partial ? "true" : "false";
      if (partial) text += job.running ? ` (partial, ${job.text})` : " (stopped early)";
      canvas.setAttribute("aria-label", text);
      setText(caption, text);
      const noteText = mode === "cam" ? mapNote(model.get("overlay_map")) : "";
      note.hidden = noteText === "";
      setText(note, noteText);
    },
  };
}
