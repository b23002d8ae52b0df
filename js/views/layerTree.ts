/**
 * Module tree: one row per layer, indented by depth, containers collapsible, a text filter.
 * A click on a row selects the layer (spatial or not).
 */
import { formatShape, h } from "../dom";
import type { ExplorerModel, LayerInfo, View } from "../types";

interface Row {
  layer: LayerInfo;
  el: HTMLElement;
  toggle: HTMLElement;
  /** Names of all ancestors present in the tree, nearest last. */
  ancestors: string[];
  container: boolean;
}

function isLayer(value: unknown): value is LayerInfo {
  if (value === null || typeof value !== "object") return false;
  const { name, type } = value as Record<string, unknown>;
  return typeof name === "string" && typeof type === "string";
}

function shortName(name: string): string {
  if (name === "") return "(model)";
  const dot = name.lastIndexOf(".");
  return dot < 0 ? name : name.slice(dot + 1);
}

export function createLayerTree(model: ExplorerModel): View {
  const filter = h("input", {
    type: "search",
    class: "cv-layer-filter",
    "data-testid": "layer-filter",
    placeholder: "filter layers (name or type)",
    "aria-label": "filter layers",
    spellcheck: "false",
    autocomplete: "off",
  });
  const tree = h("div", { class: "cv-tree", "data-testid": "layer-tree", role: "tree" });
  const el = h(
    "div",
    { class: "cv-layers" },
    h("div", { class: "cv-section-title" }, "Layers"),
    filter,
    tree,
  );

  let shown: unknown;
  let rows: Row[] = [];
  const byName = new Map<string, Row>();
  const collapsed = new Set<string>();
  let selectedName: string | null = null;

  function select(name: string): void {
    if (model.get("selected_layer") === name) return;
    model.set("selected_layer", name);
    // A channel index means nothing in another layer: drop the enlarged channel.
    if (model.get("selected_channel") !== -1) model.set("selected_channel", -1);
    model.save_changes();
  }

  function toggle(row: Row): void {
    const name = row.layer.name;
    if (collapsed.has(name)) collapsed.delete(name);
    else collapsed.add(name);
    applyVisibility();
  }

  tree.addEventListener("click", (event) => {
    const target = event.target as Element;
    const rowEl = target.closest<HTMLElement>('[data-testid="layer"]');
    if (rowEl === null || !tree.contains(rowEl)) return;
    const row = byName.get(rowEl.dataset.name ?? "");
    if (row === undefined) return;
    if (target.closest(".cv-toggle") !== null && row.container) toggle(row);
    else select(row.layer.name);
  });

  tree.addEventListener("keydown", (event) => {
    const rowEl = (event.target as Element).closest<HTMLElement>('[data-testid="layer"]');
    const row = rowEl ? byName.get(rowEl.dataset.name ?? "") : undefined;
    if (row === undefined) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(row.layer.name);
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      if (!row.container) return;
      const collapse = event.key === "ArrowLeft";
      if (collapse !== collapsed.has(row.layer.name)) toggle(row);
      event.preventDefault();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const visible = rows.filter((r) => !r.el.hidden);
      const i = visible.indexOf(row) + (event.key === "ArrowDown" ? 1 : -1);
      visible[i]?.el.focus();
      event.preventDefault();
    }
  });

  filter.addEventListener("input", () => applyVisibility());

  function rebuild(layers: LayerInfo[]): void {
    byName.clear();
    const names = new Set(layers.map((l) => l.name));
    rows = layers.map((layer, i) => {
      const next = layers[i + 1];
      const container =
        next !== undefined && (layer.name === "" || next.name.startsWith(`${layer.name}.`));
      const ancestors: string[] = [];
      const parts = layer.name.split(".");
      for (let k = 1; k < parts.length; k++) {
        const prefix = parts.slice(0, k).join(".");
        if (names.has(prefix)) ancestors.push(prefix);
      }
      if (layer.name !== "" && names.has("")) ancestors.unshift("");
      const depth = Number.isFinite(layer.depth) ? layer.depth : parts.length;
      const toggleEl = h(
        "span",
        { class: "cv-toggle", "aria-hidden": "true" },
        container ? "▾" : "",
      );
      const calls = typeof layer.calls === "number" ? layer.calls : 1;
      const rowEl = h(
        "div",
        {
          class: `cv-layer${layer.spatial ? "" : " cv-nonspatial"}${calls === 0 ? " cv-unused" : ""}`,
          "data-testid": "layer",
          "data-name": layer.name,
          "data-selected": "false",
          "data-spatial": layer.spatial ? "true" : "false",
          role: "treeitem",
          "aria-level": depth,
          "aria-selected": "false",
          tabindex: -1,
          title: `${layer.name || "(model)"} · ${layer.type}${
            layer.shape ? ` · output ${formatShape(layer.shape)}` : ""
          }${calls > 1 ? ` · called ${calls}×` : ""}${calls === 0 ? " · not called" : ""}`,
        },
        toggleEl,
        h("span", { class: "cv-layer-name" }, shortName(layer.name)),
        h("span", { class: "cv-layer-type" }, layer.type),
        h("span", { class: "cv-layer-shape" }, formatShape(layer.shape)),
      );
      rowEl.style.setProperty("--depth", String(Math.max(0, depth - 1)));
      if (container) rowEl.setAttribute("aria-expanded", "true");
      const row: Row = { layer, el: rowEl, toggle: toggleEl, ancestors, container };
      byName.set(layer.name, row);
      return row;
    });
    tree.replaceChildren(...rows.map((r) => r.el));
    if (rows.length === 0) tree.append(h("div", { class: "cv-empty" }, "no layers"));
    selectedName = null;
    applyVisibility();
  }

  function applyVisibility(): void {
    const query = filter.value.trim().toLowerCase();
    let keep: Set<string> | null = null;
    if (query !== "") {
      keep = new Set();
      for (const row of rows) {
        const { name, type } = row.layer;
        if (name.toLowerCase().includes(query) || type.toLowerCase().includes(query)) {
          keep.add(name);
          for (const a of row.ancestors) keep.add(a);
        }
      }
    }
    for (const row of rows) {
      const isCollapsed = collapsed.has(row.layer.name);
      if (row.container) {
        row.toggle.textContent = isCollapsed && keep === null ? "▸" : "▾";
        row.el.setAttribute("aria-expanded", isCollapsed ? "false" : "true");
      }
      row.el.hidden =
        keep !== null ? !keep.has(row.layer.name) : row.ancestors.some((a) => collapsed.has(a));
    }
  }

  function scrollToRow(row: Row): void {
    if (row.el.hidden) return;
    const top = row.el.offsetTop;
    const bottom = top + row.el.offsetHeight;
    if (top < tree.scrollTop) tree.scrollTop = top;
    else if (bottom > tree.scrollTop + tree.clientHeight)
      tree.scrollTop = bottom - tree.clientHeight;
  }

  return {
    el,
    update() {
      const raw = model.get("layers");
      if (raw !== shown) {
        shown = raw;
        rebuild(Array.isArray(raw) ? raw.filter(isLayer) : []);
      }
      const name = model.get("selected_layer");
      if (name === selectedName) return;
      const previous = selectedName === null ? undefined : byName.get(selectedName);
      if (previous !== undefined) {
        previous.el.dataset.selected = "false";
        previous.el.setAttribute("aria-selected", "false");
        previous.el.tabIndex = -1;
      }
      selectedName = name;
      const row = byName.get(name);
      if (row === undefined) {
        rows[0]?.el.setAttribute("tabindex", "0");
        return;
      }
      row.el.dataset.selected = "true";
      row.el.setAttribute("aria-selected", "true");
      row.el.tabIndex = 0;
      // Reveal a selection made elsewhere (e.g. from Python) inside a collapsed container.
      let expanded = false;
      for (const a of row.ancestors) expanded = collapsed.delete(a) || expanded;
      if (expanded) applyVisibility();
      scrollToRow(row);
    },
  };
}
