import { describe, expect, it } from "vitest";
import {
  costHint,
  firstSentence,
  groupByFamily,
  mergeParams,
  methodCaption,
  paramControls,
  parseParamInput,
  validMethods,
  windowPositions,
} from "./methods";

const PARAMS = [
  { name: "steps", kind: "int", default: 32, low: 1, high: 256, choices: [], doc: "path steps" },
  { name: "sigma", kind: "float", default: 0.15, low: 0, high: null, choices: [], doc: "" },
  { name: "abs", kind: "bool", default: true, low: null, high: null, choices: [], doc: "abs" },
  {
    name: "baseline",
    kind: "choice",
    default: "black",
    low: null,
    high: null,
    choices: ["black", "blur", "noise"],
    doc: "reference image",
  },
];

const METHODS = validMethods([
  {
    name: "ig",
    title: "Integrated Gradients",
    family: "gradient",
    output: "pixel",
    signed: true,
    uses_layer: false,
    cost: "32 passes",
    summary: "Path integral. More.",
    params: PARAMS,
  },
  {
    name: "gradcam",
    title: "Grad-CAM",
    family: "cam",
    output: "layer",
    signed: false,
    uses_layer: true,
    cost: "1 pass",
    summary: "Weighted activations.",
    params: [],
  },
  {
    name: "occlusion",
    title: "Occlusion",
    family: "perturbation",
    output: "pixel",
    signed: false,
    uses_layer: false,
    cost: "slow",
    summary: "",
    params: [],
  },
  {
    name: "odd",
    title: "",
    family: "custom",
    output: "layer",
    signed: false,
    uses_layer: false,
    cost: "",
    summary: "",
    params: [],
  },
  { title: "no name" },
  null,
]);

describe("paramControls", () => {
  it("describes one control per parameter with defaults", () => {
    expect(paramControls(PARAMS)).toEqual([
      {
        name: "steps",
        type: "number",
        kind: "int",
        min: 1,
        max: 256,
        step: "1",
        value: 32,
        choices: [],
        doc: "path steps",
      },
      {
        name: "sigma",
        type: "number",
        kind: "float",
        min: 0,
        max: null,
        step: "any",
        value: 0.15,
        choices: [],
        doc: "",
      },
      {
        name: "abs",
        type: "checkbox",
        kind: "bool",
        min: null,
        max: null,
        step: null,
        value: true,
        choices: [],
        doc: "abs",
      },
      {
        name: "baseline",
        type: "select",
        kind: "choice",
        min: null,
        max: null,
        step: null,
        value: "black",
        choices: ["black", "blur", "noise"],
        doc: "reference image",
      },
    ]);
  });

  it("takes current values that fit, else the default", () => {
    const values = { steps: 64, sigma: "x", abs: false, baseline: "nope", extra: 1 };
    const byName = Object.fromEntries(paramControls(PARAMS, values).map((c) => [c.name, c.value]));
    expect(byName).toEqual({ steps: 64, sigma: 0.15, abs: false, baseline: "black" });
  });

  it("handles null defaults and malformed entries", () => {
    const controls = paramControls([
      { name: "seed", kind: "int", default: null, low: null, high: null, choices: [], doc: "" },
      { name: "mode", kind: "choice", default: null, choices: ["a", "b"] },
      { name: "flag", kind: "bool", default: null },
      { name: "weird", kind: "text", default: "x" },
      { kind: "int", default: 1 },
      { name: "seed", kind: "float", default: 2 }, // duplicate name
      "junk",
    ]);
    expect(controls.map((c) => [c.name, c.value])).toEqual([
      ["seed", null],
      ["mode", "a"],
      ["flag", false],
    ]);
    expect(paramControls(undefined)).toEqual([]);
    expect(paramControls([], null)).toEqual([]);
  });
});

describe("parseParamInput", () => {
  const [steps, sigma, abs, baseline] = paramControls(PARAMS) as [
    ReturnType<typeof paramControls>[number],
    ReturnType<typeof paramControls>[number],
    ReturnType<typeof paramControls>[number],
    ReturnType<typeof paramControls>[number],
  ];
  it("reads numbers within their bounds", () => {
    expect(parseParamInput(steps, "8")).toEqual({ value: 8 });
    expect(parseParamInput(sigma, "1e3")).toEqual({ value: 1000 });
    expect(parseParamInput(steps, "")).toEqual({ value: undefined }); // back to the default
  });
  it("refuses out-of-range, fractional and non-numeric values with a note", () => {
    expect(parseParamInput(steps, "0")).toEqual({
      note: "steps must be between 1 and 256; 0 was not applied.",
    });
    expect(parseParamInput(steps, "1000")).toEqual({
      note: "steps must be between 1 and 256; 1000 was not applied.",
    });
    expect(parseParamInput(steps, "7.6")).toEqual({
      note: "steps must be a whole number between 1 and 256; 7.6 was not applied.",
    });
    expect(parseParamInput(sigma, "-1")).toEqual({
      note: "sigma must be at least 0; -1 was not applied.",
    });
    expect(parseParamInput(sigma, "abc")).toEqual({ note: "sigma must be a number, at least 0." });
    expect(parseParamInput(baseline, "other")).toEqual({
      note: "baseline: pick one of black, blur, noise.",
    });
  });
  it("passes booleans and known choices", () => {
    expect(parseParamInput(abs, false)).toEqual({ value: false });
    expect(parseParamInput(baseline, "blur")).toEqual({ value: "blur" });
  });
});

describe("mergeParams", () => {
  it("returns a new object with the value merged or removed", () => {
    const current = { steps: 8 };
    const next = mergeParams(current, "abs", false);
    expect(next).toEqual({ steps: 8, abs: false });
    expect(next).not.toBe(current);
    expect(current).toEqual({ steps: 8 });
    expect(mergeParams(next, "steps", undefined)).toEqual({ abs: false });
    expect(mergeParams(null, "steps", 3)).toEqual({ steps: 3 });
  });
});

describe("methods", () => {
  it("validates and groups by family in the documented order", () => {
    expect(METHODS.map((m) => m.name)).toEqual(["ig", "gradcam", "occlusion", "odd"]);
    expect(METHODS[3]?.title).toBe("odd");
    expect(groupByFamily(METHODS).map(([f, list]) => [f, list.map((m) => m.name)])).toEqual([
      ["gradient", ["ig"]],
      ["perturbation", ["occlusion"]],
      ["cam", ["gradcam"]],
      ["custom", ["odd"]],
    ]);
  });

  it("captions layer methods with the layer, pixel methods without", () => {
    expect(methodCaption(METHODS, "gradcam", "tabby", "_swish")).toBe(
      "Grad-CAM for “tabby” at _swish",
    );
    expect(methodCaption(METHODS, "ig", "tabby", "_swish")).toBe(
      "Integrated Gradients for “tabby”",
    );
    // Before `methods` arrives: Grad-CAM, as before.
    expect(methodCaption([], "", "tabby", "_blocks.4")).toBe("Grad-CAM for “tabby” at _blocks.4");
  });

  it("takes the summary's first sentence", () => {
    expect(firstSentence("Path integral. More.")).toBe("Path integral.");
    expect(firstSentence("e.g.x is fine? Yes")).toBe("e.g.x is fine?");
    expect(firstSentence("  no stop ")).toBe("no stop");
    expect(firstSentence("")).toBe("");
  });
});

describe("occlusion cost hint", () => {
  // The registry's occlusion entry as the kernel sends it (cnnvis_widget/methods/perturbation.py).
  const [occlusion] = validMethods([
    {
      name: "occlusion",
      title: "Occlusion",
      family: "perturbation",
      output: "pixel",
      signed: true,
      uses_layer: false,
      cost: "1F + one forward per window position (169 at 224 px, window 32, stride 16), batched",
      summary: "",
      params: [
        { name: "window", kind: "int", default: 32, low: 1, high: 512, choices: [], doc: "" },
        { name: "stride", kind: "int", default: 16, low: 1, high: 512, choices: [], doc: "" },
      ],
    },
  ]);
  if (occlusion === undefined) throw new Error("no occlusion entry");
  const image = [224, 224, 3];

  /** Window starts as the kernel's loop makes them: 0, stride, ... until one reaches the edge. */
  function starts(size: number, window: number, stride: number): number[] {
    const out: number[] = [];
    for (let top = 0; ; top += stride) {
      out.push(top);
      if (top + window >= size) return out;
    }
  }

  it("counts the positions that cover the image, the last one reaching the far edge", () => {
    for (const [size, window, stride] of [
      [224, 32, 16],
      [224, 32, 8],
      [224, 50, 48],
      [100, 7, 3],
      [32, 32, 5],
    ] as const) {
      const n = windowPositions(size, window, stride);
      expect(n).toBe(starts(size, window, stride).length);
      expect((n - 1) * stride + window).toBeGreaterThanOrEqual(size); // the edge is covered
      if (n > 1) expect((n - 2) * stride + window).toBeLessThan(size); // no position to spare
    }
    expect(windowPositions(20, 32, 16)).toBe(0);
  });

  it("agrees with the registry's figure for the defaults and follows the stride set", () => {
    expect(costHint(occlusion, {}, image)).toContain(" 169 forward passes (13×13");
    const fine = costHint(occlusion, { stride: 4 }, image);
    expect(fine).toContain(` ${windowPositions(224, 32, 4) ** 2} forward passes`);
    expect(fine).toContain("stride 4");
    const coarse = costHint(occlusion, { window: 64, stride: 64 }, [224, 160, 3]);
    expect(coarse).toContain(" 12 forward passes (4×3 window positions at 224×160 px");
  });

  it("says when the window does not fit, and keeps the registry text without an image", () => {
    expect(costHint(occlusion, { window: 300 }, image)).toMatch(/window 300 is larger/);
    expect(costHint(occlusion, { stride: 4 }, null)).toBe(occlusion.cost);
    const ig = METHODS[0];
    if (ig !== undefined) expect(costHint(ig, { steps: 3 }, image)).toBe(ig.cost);
  });
});
