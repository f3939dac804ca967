// The image viewer: the key slice and the other slices with the disc mask, window/level (drag and
// presets), zoom and pan, wheel scrolling through slices. Boxes and their labels sit on the same
// stage as the image, so they stay registered at every zoom.

import { FULL, PRESETS, applyWindow, describe, dragWindow } from "./windowing.js";

/**
 * @typedef {{preview: HTMLImageElement, mask: HTMLImageElement, slices: HTMLImageElement | null,
 *   slicesMask: HTMLImageElement | null}} StudyImages
 * @typedef {{count: number, columns: number, cell: [number, number]}} SliceLayout
 * @typedef {"edit" | "wl" | "pan"} Tool
 */

const MIN_ZOOM = 1;
const MAX_ZOOM = 8;

export class Viewer {
  /**
   * @param {{viewport: HTMLElement, stage: HTMLElement, canvas: HTMLCanvasElement}} els
   * @param {{onSlice: (slice: number) => void, onView: () => void}} hooks
   */
  constructor(els, hooks) {
    this.viewport = els.viewport;
    this.stage = els.stage;
    this.canvas = els.canvas;
    this.hooks = hooks;
    /** @type {StudyImages | null} */ this.images = null;
    /** @type {SliceLayout | null} */ this.layout = null;
    this.keySlice = 0;
    this.slice = 0;
    this.count = 1;
    this.window = { ...FULL };
    this.maskOpacity = 0.45;
    this.maskVisible = true;
    /** @type {Tool} */ this.tool = "edit";
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    this.fitWidth = 0;
    this.windowable = true;
    /** @type {Map<number, ImageData>} */ this.pixels = new Map();
    this.drag = null;
    this.bind();
  }

  /** @param {StudyImages} images @param {{keySlice: number, count: number, layout: SliceLayout | null}} info */
  load(images, info) {
    this.images = images;
    this.layout = images.slices ? info.layout : null;
    this.keySlice = info.keySlice;
    this.count = this.layout ? info.count : 1;
    this.slice = this.keySlice;
    this.pixels.clear();
    this.canvas.width = images.preview.naturalWidth;
    this.canvas.height = images.preview.naturalHeight;
    this.window = { ...FULL };
    this.layoutViewport();
    this.fit();
  }

  get onKeySlice() {
    return this.slice === this.keySlice;
  }

  /** @param {number} slice */
  setSlice(slice) {
    const next = Math.max(0, Math.min(this.count - 1, Math.round(slice)));
    if (next === this.slice) return;
    this.slice = next;
    this.render();
    this.hooks.onSlice(next);
  }

  /** @param {{width: number, center: number}} w */
  setWindow(w) {
    this.window = { width: w.width, center: w.center };
    this.render();
    this.hooks.onView();
  }

  /** @param {keyof typeof PRESETS} name */
  preset(name) {
    const p = PRESETS[name];
    if (p) this.setWindow(p);
  }

  get windowText() {
    return describe(this.window);
  }

  /** @param {Tool} tool */
  setTool(tool) {
    this.tool = tool;
    this.viewport.dataset.tool = tool;
    this.hooks.onView();
  }

  /** @param {boolean} visible @param {number} opacity 0..1 */
  setMask(visible, opacity) {
    this.maskVisible = visible;
    this.maskOpacity = opacity;
    this.render();
  }

  /** Zoom by `factor` about a point of the viewport (its centre by default). @param {number} factor */
  zoomBy(factor, at = { x: this.viewport.clientWidth / 2, y: this.viewport.clientHeight / 2 }) {
    const zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, this.zoom * factor));
    const scale = zoom / this.zoom;
    this.pan = { x: at.x - (at.x - this.pan.x) * scale, y: at.y - (at.y - this.pan.y) * scale };
    this.zoom = zoom;
    this.place();
  }

  /** @param {number} dx @param {number} dy */
  panBy(dx, dy) {
    this.pan = { x: this.pan.x + dx, y: this.pan.y + dy };
    this.place();
  }

  /** Whole image in view, centred; window back to the full range. */
  fit() {
    this.zoom = 1;
    this.pan = { x: (this.viewport.clientWidth - this.fitWidth) / 2, y: 0 };
    this.window = { ...FULL };
    this.place();
    this.render();
  }

  /** The viewport keeps the image's shape and, with the slice bar under it, fits the screen. */
  layoutViewport() {
    if (!this.images) return;
    const ratio = this.canvas.height / this.canvas.width;
    const width = this.viewport.parentElement ? this.viewport.parentElement.clientWidth : this.viewport.clientWidth;
    const top = this.viewport.getBoundingClientRect().top + window.scrollY;
    const height = Math.min(width * ratio, Math.max(240, window.innerHeight - top - 64));
    this.viewport.style.height = `${Math.round(height)}px`;
    this.fitWidth = Math.min(width, height / ratio);
  }

  /** Positions the stage for the current zoom and pan (pan kept so some image stays in view). */
  place() {
    const width = this.fitWidth * this.zoom;
    const height = width * (this.canvas.height / this.canvas.width);
    const vw = this.viewport.clientWidth;
    const vh = this.viewport.clientHeight;
    const keep = 40;
    this.pan.x = Math.min(vw - keep, Math.max(keep - width, this.pan.x));
    this.pan.y = Math.min(vh - keep, Math.max(keep - height, this.pan.y));
    this.stage.style.width = `${width}px`;
    this.stage.style.transform = `translate(${this.pan.x}px, ${this.pan.y}px)`;
    this.hooks.onView();
  }

  /** Image pixels of a slice before windowing (cached). @param {number} slice @returns {ImageData | null} */
  source(slice) {
    if (this.pixels.has(slice)) return /** @type {ImageData} */ (this.pixels.get(slice));
    const { width, height } = this.canvas;
    const work = document.createElement("canvas");
    work.width = width;
    work.height = height;
    const ctx = /** @type {CanvasRenderingContext2D} */ (work.getContext("2d"));
    this.drawSlice(ctx, slice, false);
    try {
      const data = ctx.getImageData(0, 0, width, height);
      this.pixels.set(slice, data);
      return data;
    } catch { // pixels of another origin without CORS: shown as they are, no window/level
      this.windowable = false;
      return null;
    }
  }

  /** @param {CanvasRenderingContext2D} ctx @param {number} slice @param {boolean} mask */
  drawSlice(ctx, slice, mask) {
    const images = /** @type {StudyImages} */ (this.images);
    const { width, height } = this.canvas;
    if (slice === this.keySlice || !this.layout) {
      ctx.drawImage(mask ? images.mask : images.preview, 0, 0, width, height);
      return;
    }
    const sprite = mask ? images.slicesMask : images.slices;
    if (!sprite) return;
    const { columns, cell } = this.layout;
    const [ch, cw] = cell;
    ctx.imageSmoothingEnabled = !mask; // label colours must not blend
    ctx.drawImage(sprite, (slice % columns) * cw, Math.floor(slice / columns) * ch, cw, ch, 0, 0, width, height);
    ctx.imageSmoothingEnabled = true;
  }

  render() {
    if (!this.images) return;
    const ctx = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext("2d"));
    const src = this.windowable ? this.source(this.slice) : null;
    if (src) {
      const out = new ImageData(new Uint8ClampedArray(src.data), src.width, src.height);
      applyWindow(out.data, this.window);
      ctx.putImageData(out, 0, 0);
    } else {
      ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
      this.drawSlice(ctx, this.slice, false);
    }
    if (this.maskVisible && this.maskOpacity > 0) {
      ctx.globalAlpha = this.maskOpacity;
      this.drawSlice(ctx, this.slice, true);
      ctx.globalAlpha = 1;
    }
  }

  bind() {
    const vp = this.viewport;
    vp.addEventListener("wheel", (e) => {
      if (!this.images) return;
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) {
        const r = vp.getBoundingClientRect();
        this.zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15, { x: e.clientX - r.left, y: e.clientY - r.top });
      } else {
        this.setSlice(this.slice + Math.sign(e.deltaY));
      }
    }, { passive: false });
    vp.addEventListener("contextmenu", (e) => e.preventDefault());
    // capture phase: window/level and pan drags never reach the box editor
    vp.addEventListener("pointerdown", (e) => {
      const mode = e.button === 2 ? "wl" : e.button === 1 ? "pan" : e.button === 0 && this.tool !== "edit" ? this.tool : null;
      if (!mode || !this.images) return;
      e.preventDefault();
      e.stopPropagation();
      vp.setPointerCapture(e.pointerId);
      this.drag = { mode, x: e.clientX, y: e.clientY, window: { ...this.window }, pan: { ...this.pan } };
    }, true);
    vp.addEventListener("pointermove", (e) => {
      const d = this.drag;
      if (!d) return;
      e.stopPropagation();
      const dx = e.clientX - d.x;
      const dy = e.clientY - d.y;
      if (d.mode === "wl" && this.windowable) this.setWindow(dragWindow(d.window, dx, dy));
      if (d.mode === "pan") {
        this.pan = { x: d.pan.x + dx, y: d.pan.y + dy };
        this.place();
      }
    }, true);
    const end = (/** @type {PointerEvent} */ e) => {
      if (!this.drag) return;
      e.stopPropagation();
      this.drag = null;
    };
    vp.addEventListener("pointerup", end, true);
    vp.addEventListener("pointercancel", end, true);
    window.addEventListener("resize", () => {
      if (!this.images) return;
      const before = this.fitWidth;
      this.layoutViewport();
      if (before) this.pan = { x: this.pan.x * (this.fitWidth / before), y: this.pan.y * (this.fitWidth / before) };
      this.place();
    });
  }
}
