/** Decoded ndarray traits, cached per payload object, with decode errors collected by trait. */
import { type Decoded, decodeOptional } from "./codecs";
import type { ExplorerModel, ExplorerState, NdArrayPayload } from "./types";

export type ArrayTrait = {
  [K in keyof ExplorerState]: ExplorerState[K] extends NdArrayPayload | null ? K : never;
}[keyof ExplorerState];

export class ArrayStore {
  private readonly cache = new Map<ArrayTrait, { payload: unknown; value: Decoded | null }>();
  /** Decode error text per trait (only traits whose current payload failed). */
  readonly errors = new Map<ArrayTrait, string>();

  constructor(private readonly model: ExplorerModel) {}

  /** The decoded array of a trait, or null when the trait is empty or cannot be decoded. */
  get(trait: ArrayTrait): Decoded | null {
    const payload = this.model.get(trait);
    const hit = this.cache.get(trait);
    if (hit !== undefined && hit.payload === payload) return hit.value;
    let value: Decoded | null = null;
    try {
      value = decodeOptional(payload);
      this.errors.delete(trait);
    } catch (err) {
      this.errors.set(trait, `Cannot decode "${trait}": ${(err as Error).message}`);
    }
    this.cache.set(trait, { payload, value });
    return value;
  }
}
