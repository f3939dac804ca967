// Window/level on the 8-bit display images: the pixel mapping, presets, and what a mouse drag does.

/** @typedef {{width: number, center: number}} Window */

/** The images arrive already windowed to the study's 1st-99.5th percentile: the full range shows them as made. */
export const FULL = { width: 256, center: 127.5 };
/** Presets on that 0-255 scale (the page's, not Hounsfield units: MRI has none). */
export const PRESETS = {
  full: { label: "Full range", ...FULL },
  contrast: { label: "High contrast", width: 128, center: 127.5 },
  bright: { label: "Dark tissue", width: 160, center: 80 },
  dark: { label: "Bright tissue (fluid)", width: 160, center: 176 },
};

/**
 * Lookup table: display value for every stored value 0..255.
 * @param {Window} w
 * @returns {Uint8ClampedArray}
 */
export function lut(w) {
  const table = new Uint8ClampedArray(256);
  const width = Math.max(1, w.width);
  const low = w.center - width / 2;
  for (let v = 0; v < 256; v++) table[v] = Math.round(((v - low) / width) * 255);
  return table;
}

/**
 * Applies a window to RGBA pixels in place (grey images: the three channels are equal).
 * @param {Uint8ClampedArray} rgba
 * @param {Window} w
 */
export function applyWindow(rgba, w) {
  if (w.width === FULL.width && w.center === FULL.center) return rgba;
  const table = lut(w);
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = table[rgba[i]];
    rgba[i + 1] = table[rgba[i + 1]];
    rgba[i + 2] = table[rgba[i + 2]];
  }
  return rgba;
}

/**
 * A drag from the start window: right widens the window, down raises the level (the usual
 * radiology-viewer mapping), one screen pixel per grey level.
 * @param {Window} start
 * @param {number} dx
 * @param {number} dy
 * @returns {Window}
 */
export function dragWindow(start, dx, dy) {
  return { width: Math.min(512, Math.max(2, start.width + dx)), center: Math.min(255, Math.max(0, start.center + dy)) };
}

/** @param {Window} w */
export const describe = (w) => `W ${Math.round(w.width)} / L ${Math.round(w.center)}`;
