/**
 * "Why this class?": Visual Explanation by Interpretation of the current image (`why_class`,
 * computed in the background: `why_class_job`). The predicted class, the explanation's heatmap
 * over the image (colormap and opacity applied here, as for the other heatmaps: changing them
 * sends nothing), and the top relevant filters that fired as tiles, highest score first, each
 * with its layer, channel, weight, score and average visualization. A tile click sends
 * `{type: "why", layer, channel}`: the kernel opens that filter's unit card (or selects the
 * channel in the filter grid when no atlas covers its layer). "Explain:" picks the class to
 * explain ("why not class X?"): the prediction, or one of the data set's classes with relevant
 * filters (`choices`); a change sends `{type: "why_label", label: number | null}` and the select
 * shows the kernel's `chosen`. Text from the model and the data (class and layer names) is set
 * as text, never parsed as HTML.
 */
import { composite, drawImage, heatByMax, mapFrom } from "../canvas";
import { type Decoded, decodeNdArray } from "../codecs";
import { getLut } from "../colormaps";
import { formatNumber, h, replace, setText } from "../dom";
import { jobView } from "../jobs";
import type { NdArray, WhyChoice, WhyClass, WhyFilter } from "../protocol";
import type { ArrayStore } from "../store";
import type { ExplorerModel, View } from "../types";
import { createJobProgress } from "./jobProgress";

/** A tile's two lines: which filter, and how much it counted. */
export function tileText(filter: WhyFilter): { name: string; detail: string } {
  return {
    name: `${filter.layer} · channel ${filter.channel}`,
    detail: `score ${formatNumber(filter.score)} · weight ${formatNumber(filter.weight)}`,
  };
}

/** The value of the "Explain:" option that explains the prediction. */
const PREDICTION = "";

/** The panel's heading line for an explanation: of the prediction, or of the class the user
 * chose when that is not the prediction. */
export function whyTitle(why: WhyClass): string {
  const shown = why.filters.length;
  const counted = `The ${shown} of its ${why.relevant} relevant filters that counted most here:`;
  if (why.chosen !== null && why.chosen !== why.model_predicted) {
    const lead = `Explaining: ${why.label} (the model predicts ${why.model_label}).`;
    if (shown === 0) return `${lead} No relevant filter of ${why.label} fired on this image.`;
    return `${lead} ${counted}`;
  }
  if (shown === 0) return `Predicted: ${why.label}. No relevant filter fired.`;
  return `Predicted: ${why.label}. ${counted}`;
}

/** The "Explain:" options: the prediction, then each choice (value: its class index). */
export function choiceOptions(choices: readonly WhyChoice[]): { value: string; text: string }[] {
  return [
    { value: PREDICTION, text: "the prediction" },
    ...choices.map((c) => ({ value: String(c.label), text: c.name })),
  ];
}

/** Replace `select`'s options with `options` unless it already has exactly these. */
function syncOptions(select: HTMLSelectElement, options: { value: string; text: string }[]): void {
  const shown = select.querySelectorAll("option");
  const same =
    shown.length === options.length &&
    options.every(
      (o, i) => shown[i]?.getAttribute("value") === o.value && shown[i]?.textContent === o.text,
    );
  if (!same) replace(select, ...options.map((o) => h("option", { value: o.value }, o.text)));
}

function decoded(payload: NdArray | null, cache: Map<NdArray, Decoded | null>): Decoded | null {
  if (payload === null) return null;
  if (!cache.has(payload)) {
    let value: Decoded | null = null;
    try {
      value = decodeNdArray(payload);
    } catch (err) {
      console.error("cnnvis-widget: cannot decode a why-class array", err);
    }
    cache.set(payload, value);
  }
  return cache.get(payload) ?? null;
}

export function createWhyClass(model: ExplorerModel, arrays: ArrayStore): View {
  const title = h("div", { class: "cv-why-title", "data-testid": "why-class-label" });
  const canvas = h("canvas", {
    class: "cv-why-heatmap",
    "data-testid": "why-heatmap",
    role: "img",
    width: 224,
    height: 224,
  });
  const tiles = h("div", { class: "cv-why-tiles", "data-testid": "why-tiles" });
  const choose = h("select", {
    class: "cv-select",
    "data-testid": "why-choose",
    "aria-label": "class to explain",
  });
  const chooser = h(
    "label",
    { class: "cv-field", hidden: true },
    h("span", {}, "Explain:"),
    choose,
  );
  const note = h("div", { class: "cv-units-note", "data-testid": "why-note", hidden: true });
  const progress = createJobProgress(model, "why_class_job", "why");
  const el = h(
    "details",
    { class: "cv-units cv-why", "data-testid": "why-class", open: true, hidden: true },
    h("summary", {}, "Why this class?"),
    chooser,
    progress.el,
    title,
    h("div", { class: "cv-units-row" }, canvas, tiles),
    note,
  );
  tiles.addEventListener("click", (event) => {
    const tile = (event.target as Element).closest<HTMLElement>(".cv-why-tile");
    if (tile === null) return;
    const channel = Number(tile.dataset.channel);
    const layer = tile.dataset.layer ?? "";
    if (!Number.isInteger(channel) || layer === "") return;
    model.send({ type: "why", layer, channel });
  });

  choose.addEventListener("change", () => {
    const value = choose.value;
    model.send({ type: "why_label", label: value === PREDICTION ? null : Number(value) });
  });

  const cache = new Map<NdArray, Decoded | null>();
  let tilesFor: WhyClass | null = null;
  let choices: readonly WhyChoice[] = []; // the options shown (the same for every image)

  function buildTiles(why: WhyClass): void {
    const items = why.filters.map((filter, rank) => {
      const { name, detail } = tileText(filter);
      const average = h("canvas", { class: "cv-why-average", "data-testid": "why-average" });
      const image = decoded(filter.average, cache);
      const drawn = image !== null && drawImage(average, image);
      average.hidden = !drawn;
      average.dataset.drawn = drawn ? "true" : "false";
      return h(
        "button",
        {
          class: "cv-why-tile",
          type: "button",
          "data-testid": "why-tile",
          "data-layer": filter.layer,
          "data-channel": filter.channel,
          "data-score": filter.score,
          "data-rank": rank,
          title: `open the unit card of ${name}`,
        },
        average,
        h("span", { class: "cv-why-tile-name" }, name),
        h("span", { class: "cv-why-tile-detail" }, detail),
      );
    });
    replace(tiles, ...items);
    tiles.dataset.count = String(items.length);
    tilesFor = why;
  }

  return {
    el,
    update() {
      el.hidden = model.get("why_available") !== true;
      progress.update();
      const job = jobView(model.get("why_class_job"));

      const why = model.get("why_class");
      if (why === null || why === undefined) {
        // Recomputing: the select keeps the user's pick until the explanation comes.
        const picked = choices.find((c) => String(c.label) === choose.value);
        const what = picked?.name ?? "the prediction";
        setText(title, job.running ? `Explaining ${what}…` : "");
        canvas.hidden = true;
        canvas.dataset.drawn = "false";
        replace(tiles);
        tiles.dataset.count = "0";
        tilesFor = null;
        note.hidden = true;
        return;
      }
      setText(title, whyTitle(why));
      title.dataset.predicted = String(why.predicted);
      choices = why.choices;
      syncOptions(choose, choiceOptions(choices));
      choose.value = why.chosen === null ? PREDICTION : String(why.chosen);
      chooser.hidden = why.choices.length === 0;
      if (why !== tilesFor) buildTiles(why);
      setText(note, why.note);
      note.hidden = why.note === "";

      const heatArray = decoded(why.heatmap, cache);
      const map = heatArray === null ? null : mapFrom(heatArray);
      const heat = map === null ? null : heatByMax(map);
      canvas.hidden = map === null;
      const lut = getLut(model.get("colormap") ?? "viridis");
      composite(canvas, arrays.get("image"), heat, model.get("opacity"), lut);
      canvas.dataset.drawn = heat === null ? "false" : "true";
      canvas.setAttribute("aria-label", `explanation heatmap for “${why.label}”`);
    },
  };
}
