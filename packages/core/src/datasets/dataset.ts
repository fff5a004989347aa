// The dataset interface: a stream of samples, never a list held in memory.
import type { Tensor } from '../tensor';

export type DatasetKind = 'images' | 'labeled-images' | 'npy' | 'npz' | 'random' | 'mnist' | 'custom';

/** How a dataset is described in calibration tables and reports. */
export interface DatasetDescription {
  kind: DatasetKind;
  source: string;
  /** Samples available (before --samples limits them), when known. */
  count?: number;
  /** True for data that is not real (random): results on it say nothing about accuracy. */
  synthetic: boolean;
  labeled: boolean;
  classes?: string[];
  preprocessing?: ImagePreprocessing;
  /** The `labels.json`/`labels.txt` that gave samples their labels, when one did. */
  labelFile?: string;
  /** Input name → the concrete shapes fed (`1×3×48×320`), recorded as samples stream. */
  inputShapes?: Record<string, string[]>;
}

export interface Sample {
  id: string;
  /** Model input name → tensor, batch dimension included. */
  inputs: Record<string, Tensor>;
  label?: number;
  /** A string label (the text a line shows), for sequence outputs decoded with CTC. */
  text?: string;
}

export interface Dataset {
  readonly description: DatasetDescription;
  /** Streams up to `limit` samples starting at `offset`, in a stable order. */
  samples(options?: { limit?: number; offset?: number }): AsyncIterable<Sample>;
}

export type Layout = 'NCHW' | 'NHWC';

export interface ImagePreprocessing {
  width: number;
  height: number;
  channels: 1 | 3;
  layout: Layout;
  /** Per-channel mean subtracted after scaling pixels to 0..1. */
  mean: number[];
  /** Per-channel std divided by after subtracting the mean. */
  std: number[];
  /**
   * How the image is fitted to width×height. `cover` crops, `contain` letterboxes (centered),
   * `fill` stretches, `pad` keeps the aspect ratio and pads right/bottom with zeros after
   * normalization (what text-line and document models expect). @defaultValue 'cover'
   */
  fit?: 'cover' | 'contain' | 'fill' | 'pad';
}
