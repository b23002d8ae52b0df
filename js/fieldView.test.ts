/**
 * The unit card's empirical field section on a minimal DOM stand-in (vitest runs in node here):
 * the sizes and notes set as text (never parsed as HTML), the map drawn with the boxes, the
 * segments drawn, a field of another unit not shown, the button and Stop messages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UnitCard, UnitField } from "./protocol";
import type { ExplorerModel, ExplorerState } from "./types";
import {
  createFieldSection,
  fieldNote,
  fieldOf,
  fieldSegmentPixels,
  fieldSizeText,
} from "./views/fieldView";

const created: string[] = [];
const drawn: { canvas: FakeElement; op: string; pixels: number }[] = [];

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
  disabled = false;
  value = 0;
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
    return this.tagName === selector;
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
  one(testid: string): FakeElement {
    const [found] = this.querySelectorAll(`[data-testid="${testid}"]`);
    if (found === undefined) throw new Error(`no ${testid}`);
    return found;
  }
  click(): void {
    for (const listener of this.listeners.get("click") ?? []) listener({ target: this });
  }
  getContext(): unknown {
    const record = (op: string, pixels = -1) => drawn.push({ canvas: this, op, pixels });
    return {
      createImageData: (w: number, h: number) => ({ data: new Uint8ClampedArray(w * h * 4) }),
      putImageData: (image: { data: Uint8ClampedArray }) =>
        record("put", image.data.filter((v, i) => i % 4 === 3 && v > 0).length),
      drawImage: () => record("image"),
      strokeRect: () => record("stroke"),
      setLineDash() {},
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
// a 3 x 3 map cut around the peak's centre (1, 1); NaN where no image reached
const FIELD: UnitField = {
  layer: HOSTILE,
  unit: 4,
  images: 2,
  requested: 5,
  complete: false,
  map: {
    dtype: "float32",
    shape: [3, 3],
    data: bytes(Float32Array.from([0, 0.1, Number.NaN, 0.2, 1, 0.3, 0, 0.1, 0])),
  },
  window: [10, 10, 13, 13],
  centre: [1, 1],
  backdrop: { dtype: "uint8", shape: [3, 3, 3], data: new Uint8Array(27).fill(128) },
  size: [13, 12],
  theoretical: [83, 83],
  box: [-1, -1, 1, 1],
  fraction: 0.5,
  patch: 11,
  stride: 3,
  indices: [7, 3],
  images_seen: { dtype: "uint8", shape: [2, 2, 2, 3], data: new Uint8Array(24).fill(100) },
  masks: { dtype: "uint8", shape: [2, 2, 2], data: Uint8Array.from([1, 0, 0, 0, 1, 1, 0, 0]) },
  dim: 0.2,
};

function card(layer: string, unit: number, examples = 9): UnitCard {
  const example = { index: 0, label: "", value: 1, y: 0, x: 0, box: [0, 0, 1, 1] };
  return { layer, unit, examples: Array(examples).fill(example) } as unknown as UnitCard;
}

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

describe("field texts", () => {
  it("say the empirical size against the theoretical, and how it was measured", () => {
    expect(fieldSizeText(FIELD)).toBe("empirical 13 x 12 px of 83 x 83 theoretical");
    expect(fieldNote(FIELD)).toBe(
      "averaged over 2 of 5 top images, stopped early · occluder 11 px, stride 3 · field: above 0.5 of the map's maximum",
    );
    expect(fieldNote({ ...FIELD, complete: true, images: 5 })).toContain("5 of 5 top images ·");
  });
  it("belong to the card of their own unit only", () => {
    expect(fieldOf(FIELD, card(HOSTILE, 4))).toBe(true);
    expect(fieldOf(FIELD, card(HOSTILE, 5))).toBe(false);
    expect(fieldOf(FIELD, card("other", 4))).toBe(false);
    expect(fieldOf(null, card(HOSTILE, 4))).toBe(false);
  });
});

describe("fieldSegmentPixels", () => {
  it("dims outside the field and outlines its border", () => {
    const images = {
      shape: [1, 3, 3, 3],
      dtype: "uint8" as const,
      data: new Uint8Array(27).fill(100),
    };
    // a plus-shaped field: only its centre is not on the border
    const masks = {
      shape: [1, 3, 3],
      dtype: "uint8" as const,
      data: Uint8Array.from([0, 1, 0, 1, 1, 1, 0, 1, 0]),
    };
    const out = fieldSegmentPixels(images, masks, 0, 0.2);
    const pixel = (p: number) => Array.from(out.subarray(4 * p, 4 * p + 4));
    expect(pixel(0)).toEqual([20, 20, 20, 255]); // outside: dimmed
    expect(pixel(1)).toEqual([255, 204, 0, 255]); // border: outlined
    expect(pixel(4)).toEqual([100, 100, 100, 255]); // inside: as is
  });
});

describe("createFieldSection", () => {
  it("renders the sizes as text, draws the map with its boxes and the segments", () => {
    const { model, sent } = fakeModel({
      unit_field: FIELD,
      field_job: { id: 3, label: "empirical field", state: "cancelled", fraction: 0.4 },
      colormap: "viridis",
      opacity: 0.5,
    });
    created.length = 0;
    drawn.length = 0;
    const section = createFieldSection(model);
    section.update(card(HOSTILE, 4));
    const el = section.el as unknown as FakeElement;
    expect(created).not.toContain("img");
    expect(el.hidden).toBe(false);
    expect(el.one("unit-field-size").textContent).toBe(
      "empirical 13 x 12 px of 83 x 83 theoretical",
    );
    expect(el.one("unit-field-note").textContent).toContain("stopped early");
    // the map: the backdrop with the colormapped map over it, zoomed, and two boxes
    const map = el.one("unit-field-map");
    expect(map.dataset.drawn).toBe("true");
    expect([map.width, map.height]).toEqual([159, 159]); // 3 px, zoom 53
    const onMap = drawn.filter((d) => d.canvas === map).map((d) => d.op);
    expect(onMap).toEqual(["image", "stroke", "stroke"]);
    // the colormapped map itself: 8 of its 9 values drawn (the NaN is left transparent)
    expect(drawn.some((d) => d.op === "put" && d.pixels === 8)).toBe(true);
    const segments = el.querySelectorAll('[data-testid="unit-field-segment"]');
    expect(segments.map((s) => s.dataset.index)).toEqual(["7", "3"]);
    expect(drawn.filter((d) => segments.includes(d.canvas) && d.op === "put")).toHaveLength(2);
    // stopped: the button offers all images again; the stopped job shows, without Stop
    const button = el.one("unit-field-compute");
    expect(button.hidden).toBe(false);
    expect(button.textContent).toBe("Empirical field again (all 5 images)");
    expect(el.one("field-progress").dataset.state).toBe("cancelled");
    expect(el.one("field-cancel").hidden).toBe(true);
    button.click();
    expect(sent).toEqual([{ type: "field", layer: HOSTILE, unit: 4 }]);
  });

  it("shows no field on another unit's card; the button asks for it, Stop cancels", () => {
    const { model, sent } = fakeModel({
      unit_field: FIELD,
      field_job: { id: 4, label: "empirical field", state: "running", fraction: 0.2 },
    });
    const section = createFieldSection(model);
    section.update(card(HOSTILE, 5, 3));
    const el = section.el as unknown as FakeElement;
    expect(el.one("unit-field-size").textContent).toBe("");
    const button = el.one("unit-field-compute");
    expect(button.textContent).toBe("Empirical field (top 3 images)");
    expect(button.disabled).toBe(true); // one field job at a time
    el.one("field-cancel").click();
    expect(sent).toEqual([{ type: "cancel", job: "field_job" }]);
    // a complete field of this card hides the button
    const done = fakeModel({ unit_field: { ...FIELD, complete: true, images: 5 } });
    const shown = createFieldSection(done.model);
    shown.update(card(HOSTILE, 4));
    expect((shown.el as unknown as FakeElement).one("unit-field-compute").hidden).toBe(true);
    shown.update(null);
    expect((shown.el as unknown as FakeElement).hidden).toBe(true);
  });
});
