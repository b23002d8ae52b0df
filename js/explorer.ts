/**
 * anywidget entry of the Explorer widget (anywidget >= 0.9: `export default { render }`).
 * Trait changes mark the views that depend on them; views redraw once per microtask, after
 * the whole state update has been applied.
 */
import { h } from "./dom";
import { ArrayStore } from "./store";
import type {
  EventHandler,
  ExplorerModel,
  ExplorerState,
  Message,
  RenderProps,
  TraitName,
  View,
} from "./types";
import { createBusy } from "./views/busy";
import { createCompare } from "./views/compare";
import { createControls } from "./views/controls";
import { createFilterGrid } from "./views/filterGrid";
import { createHeader } from "./views/header";
import { createJobProgress } from "./views/jobProgress";
import { createLayerTree } from "./views/layerTree";
import { createMessage } from "./views/message";
import { createMethodControls } from "./views/methods";
import { createOverlay } from "./views/overlay";
import { createPredictions } from "./views/predictions";
import { createSynthesis } from "./views/synthesis";
import { createUnitCard } from "./views/unitCard";
import { createWhyClass } from "./views/whyClass";

export function renderExplorer(model: ExplorerModel, el: HTMLElement): () => void {
  const arrays = new ArrayStore(model);
  let localMessage: Message | null = null;

  const busy = createBusy(model);
  const header = createHeader(model, busy.el);
  const banner = createMessage();
  const message: View = {
    el: banner.el,
    update() {
      const fromKernel = model.get("message");
      if (fromKernel) return banner.show(fromKernel);
      if (localMessage) return banner.show(localMessage);
      const decodeErrors = [...arrays.errors.values()];
      banner.show(decodeErrors.length ? { level: "error", text: decodeErrors.join("\n") } : null);
    },
  };
  const controls = createControls(model, {
    notify(m) {
      localMessage = m;
      schedule([message]);
    },
  });
  const predictions = createPredictions(model);
  const layerTree = createLayerTree(model);
  const overlay = createOverlay(model, arrays);
  const methods = createMethodControls(model);
  const camProgress = createJobProgress(model, "overlay_job", "cam");
  const compare = createCompare(model, arrays);
  const synthesis = createSynthesis(model);
  const unitCard = createUnitCard(model);
  const whyClass = createWhyClass(model, arrays);
  const filterGrid = createFilterGrid(model, arrays, {
    controls: synthesis.featureControls,
    grid: synthesis.featureGrid,
  });

  const root = h(
    "div",
    { class: "cnnvis-explorer", "data-testid": "explorer" },
    header.el,
    message.el,
    h(
      "div",
      { class: "cv-body" },
      h("div", { class: "cv-col cv-col-layers" }, layerTree.el),
      h(
        "div",
        { class: "cv-col cv-col-main" },
        controls.source,
        overlay.el,
        camProgress.el,
        methods.el,
        controls.display,
        predictions.el,
      ),
      h("div", { class: "cv-col cv-col-filters" }, filterGrid.el),
    ),
    whyClass.el,
    unitCard.el,
    compare.el,
    synthesis.el,
  );

  const views: View[] = [
    header,
    busy,
    message,
    controls,
    methods,
    predictions,
    layerTree,
    overlay,
    camProgress,
    filterGrid,
    compare,
    synthesis,
    unitCard,
    whyClass,
  ];

  // Which views redraw when a trait changes. Array traits also refresh the banner (decode errors).
  const deps: Record<TraitName, View[]> = {
    model_name: [header],
    image_names: [controls],
    image_name: [controls],
    image: [overlay, message, compare, methods, whyClass],
    predictions: [predictions, overlay, compare],
    labels: [predictions, overlay, compare],
    selected_class: [predictions, overlay, compare],
    layers: [layerTree, compare],
    selected_layer: [layerTree, unitCard],
    overlay_layer: [overlay],
    overlay_map: [overlay, message],
    overlay_job: [camProgress, overlay],
    compare_methods: [compare],
    compare_layers: [compare],
    comparison: [compare],
    compare_job: [compare],
    overlay_signed: [overlay],
    overlay_method: [overlay],
    methods: [methods, overlay, compare],
    method: [methods],
    method_params: [methods],
    grid: [filterGrid, overlay, message],
    grid_lo: [filterGrid, message],
    grid_hi: [filterGrid, message],
    grid_means: [filterGrid, message, synthesis],
    grid_layer: [filterGrid, overlay, synthesis],
    colormap: [controls, overlay, filterGrid, compare, unitCard, whyClass],
    opacity: [controls, overlay, compare, unitCard, whyClass],
    sort_by: [controls, filterGrid, synthesis],
    selected_channel: [filterGrid, overlay, synthesis],
    overlay_source: [overlay],
    map_sign: [controls, overlay, compare],
    message: [message],
    busy: [busy],
    synth_kinds: [synthesis],
    synth_kind: [synthesis],
    synth_params: [synthesis],
    synthesis: [synthesis, unitCard],
    synth_job: [synthesis],
    synth_pins: [synthesis],
    feature_grid: [synthesis, unitCard],
    feature_grid_job: [synthesis],
    atlas_images: [unitCard],
    atlas_layers: [unitCard],
    atlas_job: [unitCard],
    unit_card: [unitCard],
    unit_labels: [filterGrid],
    unit_field: [unitCard],
    field_job: [unitCard],
    why_available: [whyClass],
    why_class: [whyClass],
    why_class_job: [whyClass],
  };

  const dirty = new Set<View>();
  let scheduled = false;
  let disposed = false;

  function flush(): void {
    scheduled = false;
    if (disposed) return;
    // Views decode arrays (and record decode errors) before the banner reads them.
    const order = views.filter((v) => dirty.has(v) && v !== message);
    if (dirty.has(message)) order.push(message);
    dirty.clear();
    for (const view of order) {
      try {
        view.update();
      } catch (err) {
        console.error("cnnvis-widget: view update failed", err);
      }
    }
  }

  function schedule(targets: readonly View[]): void {
    for (const v of targets) dirty.add(v);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  }

  const handlers: [string, EventHandler][] = [];
  for (const trait of Object.keys(deps) as TraitName[]) {
    const handler: EventHandler = () => schedule(deps[trait]);
    model.on(`change:${trait}`, handler);
    handlers.push([`change:${trait}`, handler]);
  }

  el.appendChild(root);
  for (const v of views) dirty.add(v);
  flush();

  return () => {
    disposed = true;
    for (const [event, handler] of handlers) model.off(event, handler);
    for (const v of views) v.destroy?.();
    root.remove();
  };
}

export default {
  render({ model, el }: RenderProps<ExplorerState>) {
    return renderExplorer(model, el);
  },
};
