/**
 * Shared types. The kernel's payloads and the Explorer's traits come from `./protocol`
 * (generated from cnnvis_widget/protocol.py: a field renamed on one side fails the build);
 * here they get the names the views use, next to the minimal anywidget model interface.
 */
import type {
  ComparisonCell,
  ExplorerTraits,
  JobState,
  LayerRow,
  MapPayload,
  Message,
  MethodRow,
  NdArray,
  ParamKind,
  ParamRow,
  ParamValue,
  Prediction,
  SynthesisKindRow,
  SynthesisPayload,
} from "./protocol";

export type {
  MapPayload,
  Message,
  ParamKind,
  ParamValue,
  Prediction,
  SynthesisKindRow,
  SynthesisPayload,
};

/** Anything `model.get()` may hand us for an ndarray trait (see docs/protocol.md). */
export type NdArrayPayload = NdArray;
export type LayerInfo = LayerRow;
/** One tunable parameter of an explanation method or synthesis kind. */
export type MethodParam = ParamRow;
/** An explanation method the kernel can compute (static list, sent once). */
export type MethodInfo = MethodRow;
/** A background job of the kernel (`overlay_job`, `compare_job`, `synth_job`, ...). */
export type JobInfo = JobState;
/** One cell of the side-by-side comparison. */
export type ComparisonRow = ComparisonCell;
/** Synced traits of `cnnvis_widget.widgets.explorer.Explorer`. */
export type ExplorerState = ExplorerTraits;

export type SortBy = ExplorerTraits["sort_by"];
/** How signed pixel maps are drawn: |value| with the user colormap, or signed (diverging). */
export type MapSign = ExplorerTraits["map_sign"];
/** What the main canvas shows over the image: the method's map or the selected channel. */
export type OverlaySource = ExplorerTraits["overlay_source"];

export type TraitName = keyof ExplorerState;

export type EventHandler = (...args: unknown[]) => void;

/** The part of anywidget's AnyModel we use (declared locally: no runtime dependency). */
export interface AnyModel<T extends object> {
  get<K extends keyof T>(key: K): T[K];
  set<K extends keyof T>(key: K, value: T[K]): void;
  save_changes(): void;
  on(eventName: string, callback: EventHandler): void;
  off(eventName?: string | null, callback?: EventHandler | null): void;
  /** anywidget signature: send(content, callbacks?, buffers?) */
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

export type ExplorerModel = AnyModel<ExplorerState>;

export interface RenderProps<T extends object> {
  model: AnyModel<T>;
  el: HTMLElement;
}

/** A piece of the UI: its root element and a redraw from current model state. */
export interface View {
  readonly el: HTMLElement;
  update(): void;
  destroy?(): void;
}
