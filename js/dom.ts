/** Tiny DOM helpers. Text always goes in through text nodes, never through HTML parsing. */

export type AttrValue = string | number | boolean | null | undefined;
export type Attrs = Record<string, AttrValue>;
export type Child = Node | string | number | null | undefined | false;

/** Create an element; `class` sets className, true -> empty attribute, false/null -> omitted. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) setAttr(node, name, value);
  append(node, ...children);
  return node;
}

export function setAttr(node: Element, name: string, value: AttrValue): void {
  if (value === null || value === undefined || value === false) node.removeAttribute(name);
  else if (name === "class") node.className = String(value);
  else node.setAttribute(name, value === true ? "" : String(value));
}

export function append(node: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `node` (strings become text nodes). */
export function replace(node: Element, ...children: Child[]): void {
  node.replaceChildren();
  append(node, ...children);
}

/** Set an element's text (textContent: never parsed as HTML). */
export function setText(node: Node, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/** Format a layer output shape (sent without the batch dimension): [64, 56, 56] -> 64×56×56. */
export function formatShape(shape: readonly number[] | null | undefined): string {
  return Array.isArray(shape) ? shape.join("×") : "";
}

export function formatPercent(prob: number): string {
  if (!Number.isFinite(prob)) return "–";
  const pct = Math.max(0, Math.min(1, prob)) * 100;
  return `${pct >= 10 || pct === 0 ? pct.toFixed(0) : pct.toFixed(1)}%`;
}

export function formatNumber(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e4)) return value.toExponential(2);
  return value.toFixed(abs < 1 ? 3 : 2);
}
