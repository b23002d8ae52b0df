/**
 * The "Why this class?" view on a minimal DOM stand-in (vitest runs in node here): tiles in the
 * kernel's order with their text set as text (never parsed as HTML), the heatmap drawn, a
 * tile click sending `{type: "why", layer, channel}`, and the "Explain:" select listing the
 * classes to choose, showing the kernel's `chosen` and sending `{type: "why_label", label}`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WhyClass } from "./protocol";
import { ArrayStore } from "./store";
import type { ExplorerModel, ExplorerState } from "./types";
import { choiceOptions, createWhyClass, tileText, whyTitle } from "./views/whyClass";

const created: string[] = [];
const drawn: { canvas: FakeElement; pixels: number }[] = [];

class FakeNode {
  parent: FakeElement | null = null;
  children: FakeNode[] = [];
  ownText = "";
  get textContent(): string {
    return this.ownText + this.children.map((c) => c.textContent).join("");
  }
  set textContent(text: string) {
    this.children = [];
    this.ownText = String(text);
  }
}

class FakeText extends FakeNode {
  constructor(text: string) {
    super();
    this.ownText = text;
  }
}

function camelToData(key: string): string {
  return `data-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

class FakeElement extends FakeNode {
  readonly attributes = new Map<string, string>();
  readonly listeners = new Map<string, ((event: unknown) => void)[]>();
  readonly dataset: Record<string, string | undefined>;
  width = 300;
  height = 150;
  value = ""; // a select's chosen value (the real DOM derives it from its options)
  constructor(readonly tagName: string) {
    super();
    created.push(tagName);
    const attributes = this.attributes;
    this.dataset = new Proxy({} as Record<string, string | undefined>, {
      get: (_, key) => attributes.get(camelToData(String(key))),
      set: (_, key, value) => {
        attributes.set(camelToData(String(key)), String(value));
        return true;
      },
    });
  }
  get className(): string {
    return this.attributes.get("class") ?? "";
  }
  set className(value: string) {
    this.attributes.set("class", value);
  }
  get hidden(): boolean {
    return this.attributes.has("hidden");
  }
  set hidden(value: boolean) {
    if (value) this.attributes.set("hidden", "");
    else this.attributes.delete("hidden");
  }
  set innerHTML(_: string) {
    throw new Error("innerHTML used: text must go in as text");
  }
  setAttribute(name: string, value: string): void {
    this.attributes.set(name, String(value));
  }
  getAttribute(name: string): string | null {
    return this.attributes.get(name) ?? null;
  }
  removeAttribute(name: string): void {
    this.attributes.delete(name);
  }
  appendChild(child: FakeNode): FakeNode {
    child.parent = this;
    this.children.push(child);
    return child;
  }
  replaceChildren(...nodes: FakeNode[]): void {
    this.children = [];
    this.ownText = "";
    for (const node of nodes) this.appendChild(node);
  }
  addEventListener(type: string, listener: (event: unknown) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  matches(selector: string): boolean {
    const attr = /^\[([\w-]+)(?:="([^"]*)")?\]$/.exec(selector);
    if (attr) {
      const [, name = "", value] = attr;
      return value === undefined ? this.attributes.has(name) : this.attributes.get(name) === value;
    }
    if (selector.startsWith(".")) return this.className.split(/\s+/).includes(selector.slice(1));
    return this.tagName === selector;
  }
  closest(selector: string): FakeElement | null {
    for (let node: FakeElement | null = this; node !== null; node = node.parent) {
      if (node.matches(selector)) return node;
    }
    return null;
  }
  querySelectorAll(selector: string): FakeElement[] {
    const found: FakeElement[] = [];
    for (const child of this.children) {
      if (!(child instanceof FakeElement)) continue;
      if (child.matches(selector)) found.push(child);
      found.push(...child.querySelectorAll(selector));
    }
    return found;
  }
  /** Fire `type` on this element only (a select's "change"). */
  dispatch(type: string): void {
    for (const listener of this.listeners.get(type) ?? []) listener({ target: this });
  }
  click(): void {
    const event = { target: this };
    for (let node: FakeElement | null = this; node !== null; node = node.parent) {
      for (const listener of node.listeners.get("click") ?? []) listener(event);
    }
  }
  getContext(): unknown {
    return {
      createImageData: (w: number, h: number) => ({ data: new Uint8ClampedArray(w * h * 4) }),
      putImageData: (image: { data: Uint8ClampedArray }) =>
        drawn.push({
          canvas: this,
          pixels: image.data.filter((v, i) => i % 4 === 3 && v > 0).length,
        }),
      drawImage: () => drawn.push({ canvas: this, pixels: -1 }),
      save() {},
      restore() {},
    };
  }
}

const saved: Record<string, unknown> = {};
beforeAll(() => {
  for (const key of ["document", "Node"]) saved[key] = (globalThis as Record<string, unknown>)[key];
  Object.assign(globalThis, {
    Node: FakeNode,
    document: {
      createElement: (tag: string) => new FakeElement(tag),
      createTextNode: (text: string) => new FakeText(text),
    },
  });
});
afterAll(() => {
  Object.assign(globalThis, saved);
});

function bytes(values: Float32Array | Uint8Array): Uint8Array {
  return new Uint8Array(values.buffer.slice(0));
}

const HOSTILE = '<img src=x onerror="alert(1)">';
const WHY: WhyClass = {
  predicted: 1,
  label: HOSTILE,
  heatmap: { dtype: "float32", shape: [2, 2], data: bytes(Float32Array.from([0, 0.5, 1, 0.25])) },
  filters: [
    { layer: "conv2", channel: 1, weight: 0.33, response: 1.0, score: 0.33, average: null },
    {
      layer: "<b>conv1</b>",
      channel: 4,
      weight: 0.17,
      response: 1.0,
      score: 0.17,
      average: { dtype: "uint8", shape: [2, 2, 3], data: new Uint8Array(12).fill(200) },
    },
  ],
  relevant: 3,
  note: "",
  choices: [
    { label: 0, name: "<b>x</b>" },
    { label: 1, name: "horizontal" },
  ],
  chosen: null,
  model_predicted: 1,
  model_label: HOSTILE,
};
/** The same image explained for the class the user chose, not the prediction. */
const CHOSEN: WhyClass = {
  ...WHY,
  predicted: 0,
  label: "<b>x</b>",
  filters: WHY.filters.slice(0, 1),
  chosen: 0,
};

function fakeModel(state: Partial<ExplorerState>) {
  const sent: unknown[] = [];
  const model = {
    get: (key: keyof ExplorerState) => state[key] ?? null,
    set: (key: keyof ExplorerState, value: unknown) => Object.assign(state, { [key]: value }),
    save_changes() {},
    on() {},
    off() {},
    send: (content: unknown) => sent.push(content),
  } as unknown as ExplorerModel;
  return { model, sent };
}

describe("tileText and whyTitle", () => {
  it("name the filter and its numbers, and the class", () => {
    const [first] = WHY.filters;
    expect(first && tileText(first)).toEqual({
      name: "conv2 · channel 1",
      detail: "score 0.330 · weight 0.330",
    });
    expect(whyTitle(WHY)).toBe(
      `Predicted: ${HOSTILE}. The 2 of its 3 relevant filters that counted most here:`,
    );
    expect(whyTitle({ ...WHY, filters: [] })).toContain("No relevant filter fired");
  });

  it("say which class is explained when the user chose one that is not the prediction", () => {
    expect(whyTitle(CHOSEN)).toBe(
      `Explaining: <b>x</b> (the model predicts ${HOSTILE}). The 1 of its 3 relevant filters that counted most here:`,
    );
    expect(whyTitle({ ...CHOSEN, filters: [] })).toBe(
      `Explaining: <b>x</b> (the model predicts ${HOSTILE}). No relevant filter of <b>x</b> fired on this image.`,
    );
    // choosing the predicted class: the prediction's wording
    expect(whyTitle({ ...WHY, chosen: 1 })).toBe(whyTitle(WHY));
  });

  it("list the prediction, then each choice", () => {
    expect(choiceOptions(WHY.choices)).toEqual([
      { value: "", text: "the prediction" },
      { value: "0", text: "<b>x</b>" },
      { value: "1", text: "horizontal" },
    ]);
  });
});

describe("createWhyClass", () => {
  it("renders the tiles as text in score order, draws the heatmap, sends the click", () => {
    const image = { dtype: "uint8" as const, shape: [2, 2, 3], data: new Uint8Array(12).fill(90) };
    const { model, sent } = fakeModel({
      why_available: true,
      why_class: WHY,
      why_class_job: { id: 1, label: "why this class", state: "done", fraction: 1 },
      image,
      colormap: "viridis",
      opacity: 0.5,
    });
    created.length = 0;
    drawn.length = 0;
    const view = createWhyClass(model, new ArrayStore(model));
    view.update();
    const el = view.el as unknown as FakeElement;
    expect(el.hidden).toBe(false);
    expect(created).not.toContain("img");
    expect(created).not.toContain("b");
    const label = el.querySelectorAll('[data-testid="why-class-label"]')[0];
    expect(label?.textContent).toContain(HOSTILE);
    const tiles = el.querySelectorAll('[data-testid="why-tile"]');
    expect(tiles.map((t) => [t.dataset.layer, t.dataset.channel, t.dataset.rank])).toEqual([
      ["conv2", "1", "0"],
      ["<b>conv1</b>", "4", "1"],
    ]);
    expect(tiles[1]?.textContent).toBe("<b>conv1</b> · channel 4score 0.170 · weight 0.170");
    // the average visualization is drawn only where there is one
    const averages = el.querySelectorAll('[data-testid="why-average"]');
    expect(averages.map((a) => a.dataset.drawn)).toEqual(["false", "true"]);
    // the heatmap: the image, then the colormapped map on top
    const heatmap = el.querySelectorAll('[data-testid="why-heatmap"]')[0];
    expect(heatmap?.dataset.drawn).toBe("true");
    expect(drawn.filter((d) => d.canvas === heatmap).length).toBeGreaterThanOrEqual(2);

    const name = tiles[1]?.querySelectorAll(".cv-why-tile-name")[0];
    name?.click();
    expect(sent).toEqual([{ type: "why", layer: "<b>conv1</b>", channel: 4 }]);
  });

  it("lists the classes to choose as text, shows `chosen`, sends the choice", () => {
    const state: Partial<ExplorerState> = {
      why_available: true,
      why_class: WHY,
      why_class_job: { id: 1, label: "why this class", state: "done", fraction: 1 },
    };
    const { model, sent } = fakeModel(state);
    created.length = 0;
    const view = createWhyClass(model, new ArrayStore(model));
    view.update();
    const el = view.el as unknown as FakeElement;
    const select = el.querySelectorAll('[data-testid="why-choose"]')[0];
    expect(select?.tagName).toBe("select");
    expect(select?.parent?.hidden).toBe(false);
    expect(select?.parent?.textContent).toContain("Explain:");
    const options = select?.querySelectorAll("option") ?? [];
    expect(options.map((o) => [o.getAttribute("value"), o.textContent])).toEqual([
      ["", "the prediction"],
      ["0", "<b>x</b>"],
      ["1", "horizontal"],
    ]);
    expect(created).not.toContain("b"); // "<b>x</b>" is text, not an element
    expect(select?.value).toBe("");

    if (select === undefined) throw new Error("no select");
    select.value = "0";
    select.dispatch("change");
    select.value = "";
    select.dispatch("change");
    expect(sent).toEqual([
      { type: "why_label", label: 0 },
      { type: "why_label", label: null },
    ]);

    // The kernel recomputes (why_class null): the pick stays and the title names it.
    select.value = "0";
    state.why_class = null;
    state.why_class_job = { id: 2, label: "why this class", state: "running", fraction: 0 };
    view.update();
    const title = el.querySelectorAll('[data-testid="why-class-label"]')[0];
    expect(title?.textContent).toBe("Explaining <b>x</b>…");
    expect(select.value).toBe("0");
    // Then the chosen class's explanation: the select shows the kernel's `chosen`.
    select.value = "";
    state.why_class = CHOSEN;
    state.why_class_job = { id: 2, label: "why this class", state: "done", fraction: 1 };
    view.update();
    expect(select.value).toBe("0");
    expect(title?.textContent).toContain("Explaining: <b>x</b> (the model predicts");
    expect(select.querySelectorAll("option").length).toBe(3);
    expect(el.querySelectorAll('[data-testid="why-tile"]').length).toBe(1);
  });

  it("hides the select when no class can be chosen", () => {
    const { model } = fakeModel({ why_available: true, why_class: { ...WHY, choices: [] } });
    const view = createWhyClass(model, new ArrayStore(model));
    view.update();
    const select = (view.el as unknown as FakeElement).querySelectorAll(
      '[data-testid="why-choose"]',
    )[0];
    expect(select?.parent?.hidden).toBe(true);
  });

  it("is hidden without an interpretation and shows progress while explaining", () => {
    const { model } = fakeModel({ why_available: false, why_class: null });
    const view = createWhyClass(model, new ArrayStore(model));
    view.update();
    expect((view.el as unknown as FakeElement).hidden).toBe(true);
    const running = fakeModel({
      why_available: true,
      why_class: null,
      why_class_job: { id: 2, label: "why this class", state: "running", fraction: 0.5 },
    });
    const busy = createWhyClass(running.model, new ArrayStore(running.model));
    busy.update();
    const el = busy.el as unknown as FakeElement;
    const progress = el.querySelectorAll('[data-testid="why-progress"]')[0];
    expect(progress?.hidden).toBe(false);
    expect(progress?.dataset.state).toBe("running");
    expect(el.querySelectorAll('[data-testid="why-tile"]')).toEqual([]);
    el.querySelectorAll('[data-testid="why-cancel"]')[0]?.click();
    expect(running.sent).toEqual([{ type: "cancel", job: "why_class_job" }]);
  });
});
