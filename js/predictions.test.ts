import { describe, expect, it } from "vitest";
import { findClass } from "./views/predictions";

const labels = ["tench", "goldfish", "great white shark", "tiger shark", "tabby"];

describe("findClass", () => {
  it("takes an index, an 'index: label' option, or a label", () => {
    expect(findClass("3", labels)).toBe(3);
    expect(findClass("4: tabby", labels)).toBe(4);
    expect(findClass("Goldfish", labels)).toBe(1);
    expect(findClass("  tabby ", labels)).toBe(4);
  });

  it("accepts a unique part of a label and refuses ambiguous or unknown text", () => {
    expect(findClass("white", labels)).toBe(2);
    expect(findClass("shark", labels)).toBeNull();
    expect(findClass("zebra", labels)).toBeNull();
    expect(findClass("99", labels)).toBeNull();
    expect(findClass("", labels)).toBeNull();
  });
});
