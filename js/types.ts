/**
 * Shared types: the minimal anywidget model interface (AFM, anywidget >= 0.9) and the trait
 * shapes of the Explorer widget, exactly as listed in docs/protocol.md.
 */

/** Anything `model.get()` may hand us for an ndarray trait (see docs/protocol.md). */
export interface NdArrayPayload {
  dtype: string;
  shape: number[];
  data: DataView | ArrayBuffer | ArrayBufferView;
}

/** A method's map: an ndarray, with a note when the map is not what the method promises. */
export interface MapPayload extends NdArrayPayload {
  note?: string;
}

export interface Prediction {
  index: number;
  label: string;
  prob: number;
}

export interface LayerInfo {
  name: string;
  type: string;
  shape: number[] | null;
  depth: number;
  spatial: boolean;
  calls: number;
}

export interface Message {
  level: "info" | "error";
  text: string;
}

export type SortBy = "index" | "mean";

/** How signed pixel maps are drawn: |value| with the user colormap, or signed (diverging). */
export type MapSign = "absolute" | "signed";

/** What the main canvas shows over the image: the method's map or the selected channel. */
export type OverlaySource = "map" | "channel";

export type ParamKind = "int" | "float" | "bool" | "choice";
export type ParamValue = number | boolean | string | null;

/** One tunable parameter of an explanation method (docs/protocol.md, `methods`). */
export interface MethodParam {
  name: string;
  kind: ParamKind;
  default: ParamValue;
  low: number | null;
  high: number | null;
  choices: string[];
  doc: string;
}

/** An explanation method the kernel can compute (static list, sent once). */
export interface MethodInfo {
  name: string;
  title: string;
  family: string;
  output: "pixel" | "layer";
  signed: boolean;
  uses_layer: boolean;
  cost: string;
  summary: string;
  params: MethodParam[];
}

/** A background job of the kernel (`cam_job`, `compare_job`). */
export interface JobInfo {
  id: number;
  label: string;
  state: "running" | "done" | "cancelled" | "error";
  fraction: number;
  /** Why it failed or was refused (state "error"). */
  error?: string;
}

/** One cell of the side-by-side comparison. */
export interface ComparisonRow {
  method: string;
  title: string;
  layer: string;
  signed: boolean;
  target: number;
  map: MapPayload | null;
  deletion: number | null;
  insertion: number | null;
  state: "queued" | "running" | "done" | "stopped" | "failed";
  /** Settings that differ from the method's defaults. */
  params?: Record<string, ParamValue>;
}

/** Synced traits of `cnnvis_widget.widgets.explorer.Explorer`. */
export interface ExplorerState {
  model_name: string;
  image_names: string[];
  image_name: string;
  image: NdArrayPayload | null;
  predictions: Prediction[];
  labels: string[];
  selected_class: number;
  layers: LayerInfo[];
  selected_layer: string;
  cam_layer: string;
  cam: MapPayload | null;
  cam_job: JobInfo | null;
  compare_methods: string[];
  compare_layers: string[];
  comparison: ComparisonRow[];
  compare_job: JobInfo | null;
  cam_signed: boolean;
  cam_method: string;
  methods: MethodInfo[];
  method: string;
  method_params: Record<string, ParamValue>;
  grid: NdArrayPayload | null;
  grid_lo: NdArrayPayload | null;
  grid_hi: NdArrayPayload | null;
  grid_means: NdArrayPayload | null;
  grid_layer: string;
  colormap: string;
  opacity: number;
  sort_by: SortBy;
  selected_channel: number;
  overlay_source: OverlaySource;
  map_sign: MapSign;
  message: Message | null;
  busy: boolean;
  synth_kinds: unknown[];
  synth_kind: string;
  synth_params: Record<string, ParamValue>;
  synthesis: Record<string, unknown> | null;
  synth_job: (JobInfo & { resumable?: boolean }) | null;
  synth_pins: Record<string, unknown>[];
  feature_grid: Record<string, unknown> | null;
  feature_grid_job: JobInfo | null;
}

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
