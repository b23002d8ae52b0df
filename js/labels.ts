/** Class names as the widget shows them. */
import type { ExplorerModel } from "./types";

/** The name of class `index`: from the top-k predictions or the model's label list, else
 * "class N". */
export function classLabel(model: ExplorerModel, index: number): string {
  const predictions = model.get("predictions");
  const p = Array.isArray(predictions) ? predictions.find((q) => q?.index === index) : undefined;
  if (p && typeof p.label === "string") return p.label;
  const labels = model.get("labels");
  const label = Array.isArray(labels) ? labels[index] : undefined;
  return typeof label === "string" ? label : `class ${index}`;
}
