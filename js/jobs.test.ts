import { describe, expect, it } from "vitest";
import { comparisonCount, comparisonHint, jobView, scoreText } from "./jobs";
import type { MethodInfo } from "./types";

function method(name: string, usesLayer: boolean): MethodInfo {
  return {
    name,
    title: name,
    family: usesLayer ? "cam" : "gradient",
    output: usesLayer ? "layer" : "pixel",
    signed: !usesLayer,
    uses_layer: usesLayer,
    cost: "",
    summary: "",
    params: [],
  };
}

const METHODS = [method("gradcam", true), method("layercam", true), method("saliency", false)];

describe("jobView", () => {
  it("reads running, cancelled and done jobs", () => {
    expect(jobView({ id: 3, label: "smoothgrad", state: "running", fraction: 0.18 })).toEqual({
      id: 3,
      state: "running",
      fraction: 0.18,
      running: true,
      text: "smoothgrad: 18%",
    });
    expect(jobView({ id: 3, label: "occlusion", state: "cancelled", fraction: 0.4 }).text).toBe(
      "occlusion: stopped at 40%",
    );
    expect(jobView({ id: 3, label: "x", state: "done", fraction: 1 }).running).toBe(false);
  });

  it("says why a job failed or was refused", () => {
    const refused = { id: 0, label: "Adversarial", state: "error", fraction: 0 };
    expect(jobView(refused).text).toBe("Adversarial: failed");
    expect(jobView({ ...refused, error: "class 5000 is out of range" }).text).toBe(
      "Adversarial: failed: class 5000 is out of range",
    );
  });

  it("treats malformed or empty traits as idle and clamps fractions", () => {
    expect(jobView(null).state).toBe("idle");
    expect(jobView({ state: "exploded" }).state).toBe("idle");
    expect(jobView({ state: "running", fraction: 7 }).fraction).toBe(1);
    expect(jobView({ state: "running", fraction: Number.NaN }).fraction).toBe(0);
  });
});

describe("comparison selection", () => {
  it("counts layer methods once per layer and pixel methods once", () => {
    expect(comparisonCount(METHODS, ["gradcam", "saliency"], [])).toBe(2);
    expect(comparisonCount(METHODS, ["gradcam"], ["a", "b", "c"])).toBe(3);
    expect(comparisonCount(METHODS, ["gradcam", "layercam", "saliency"], ["a", "b", "c"])).toBe(7);
    expect(comparisonCount(METHODS, ["gradcam", "gradcam", "unknown"], [])).toBe(1);
  });

  it("says what to change when the count is outside 2..6", () => {
    expect(comparisonHint(1)).toEqual({
      ok: false,
      text: "pick 2 or more methods, or one layer method and 2 or more layers",
    });
    expect(comparisonHint(7).ok).toBe(false);
    expect(comparisonHint(4)).toEqual({ ok: true, text: "4 maps" });
  });

  it("formats scores, with a dash before they exist", () => {
    expect(scoreText(0.1234, 0.5)).toBe("deletion 0.123 ↓ · insertion 0.500 ↑");
    expect(scoreText(null, undefined)).toBe("deletion – ↓ · insertion – ↑");
  });
});
