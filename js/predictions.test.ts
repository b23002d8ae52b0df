import { describe, expect, it } from "vitest";
import { findClass, searchClass } from "./views/predictions";

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

describe("searchClass", () => {
  it("names the problem and the fix when no single class matches", () => {
    expect(searchClass("shark", labels)).toEqual({
      index: null,
      note: "“shark” is in 2 class names (2: great white shark, 3: tiger shark): type more of the name, or pick one from the list.",
    });
    expect(searchClass("zebra", labels).note).toBe(
      "no class name contains “zebra”: type part of a name or an index from 0 to 4.",
    );
    expect(searchClass("99", labels).note).toBe("there is no class 99: indices run from 0 to 4.");
    expect(searchClass(" ", labels)).toEqual({ index: null, note: "" });
    expect(searchClass("tabby", labels)).toEqual({ index: 4, note: "" });
  });
});
