// The box layer: Annotorious (vendored UMD build, window.Annotorious) draws, moves, resizes and
// selects rectangles; this adapter keeps them axis-aligned, keeps a box selected through a resize,
// reports each finished gesture once, and carries the page's box records (level, LDH, origin).

import { labelOf } from "./discs.js";

/** @typedef {import("./discs.js").Box} Box @typedef {import("./discs.js").Rect} Rect */

const DRAG_PX = 3;

/** @param {Box} box */
function toAnnotation(box) {
  const [x1, y1, x2, y2] = box.box;
  return {
    id: box.id,
    bodies: [{ id: `${box.id}-label`, annotation: box.id, purpose: "tagging", value: labelOf(box) }],
    target: {
      annotation: box.id,
      selector: { type: "RECTANGLE", geometry: { x: x1, y: y1, w: x2 - x1, h: y2 - y1, bounds: { minX: x1, minY: y1, maxX: x2, maxY: y2 } } },
    },
  };
}

export class BoxLayer {
  /**
   * @param {HTMLCanvasElement} canvas the key slice; its size is the image size
   * @param {{onEdited: (boxes: Box[], change: string) => void, onSelect: (id: string | null) => void,
   *   newBox: (rect: Rect, others: Box[]) => Box}} hooks
   */
  constructor(canvas, hooks) {
    this.canvas = canvas;
    this.hooks = hooks;
    /** @type {Map<string, Box>} */ this.boxes = new Map();
    this.applying = false; // our own writes to Annotorious are not user edits
    this.changed = false;
    this.gesture = null;
    // @ts-ignore the UMD global
    const anno = window.Annotorious.createImageAnnotator(canvas, { drawingEnabled: false, drawingMode: "drag" });
    this.anno = anno;
    anno.element.classList.add("box-layer");
    // Annotorious wraps the canvas in an inline-block: let it fill the stage like the canvas
    anno.element.style.display = "block";
    anno.element.style.width = "100%";
    anno.setStyle((/** @type {any} */ a) => {
      const box = this.boxes.get(a.id);
      const ldh = !!box && box.herniated;
      return { stroke: ldh ? "#ff3b30" : "#3fb6ff", strokeWidth: ldh ? 3 : 2, fill: ldh ? "#ff3b30" : "#3fb6ff", fillOpacity: 0.08 };
    });
    anno.state.store.observe(() => {
      if (!this.applying) this.changed = true;
    });
    anno.on("selectionChanged", () => this.hooks.onSelect(this.selected));
    this.onPointerDown = (/** @type {PointerEvent} */ e) => {
      this.changed = false;
      this.gesture = { x: e.clientX, y: e.clientY, selected: this.selected, dragged: false };
    };
    this.onPointerMove = (/** @type {PointerEvent} */ e) => {
      const g = this.gesture;
      if (g && Math.hypot(e.clientX - g.x, e.clientY - g.y) > DRAG_PX) g.dragged = true;
    };
    // Annotorious' drawing tool stops the pointerup it ends a box with: listen in the capture
    // phase, and look once Annotorious has handled the event
    this.onPointerUp = () => setTimeout(() => this.finishGesture(), 0);
    anno.element.addEventListener("pointerdown", this.onPointerDown, true);
    window.addEventListener("pointermove", this.onPointerMove, true);
    window.addEventListener("pointerup", this.onPointerUp, true);
  }

  /** The selected box's id, or null. */
  get selected() {
    const sel = this.anno.getSelected();
    return sel.length ? sel[0].id : null;
  }

  /** @returns {Box[]} */
  list() {
    return [...this.boxes.values()].map((b) => ({ ...b, box: /** @type {Rect} */ ([...b.box]) }));
  }

  /** Replaces every box (load, undo, renumber); the selection stays on a box that is still there. @param {Box[]} boxes */
  setBoxes(boxes) {
    const keep = this.selected;
    this.boxes = new Map(boxes.map((b) => [b.id, { ...b, box: /** @type {Rect} */ ([...b.box]) }]));
    this.write(() => this.anno.setAnnotations(boxes.map(toAnnotation), true));
    if (keep && this.boxes.has(keep)) this.select(keep);
  }

  /** One box changed by the page (label, LDH, keyboard move). @param {Box} box */
  update(box) {
    this.boxes.set(box.id, { ...box, box: /** @type {Rect} */ ([...box.box]) });
    this.write(() => this.anno.updateAnnotation(toAnnotation(box)));
  }

  /** A box placed by the page (from the keyboard); it becomes the selected one. @param {Box} box */
  add(box) {
    this.boxes.set(box.id, { ...box, box: /** @type {Rect} */ ([...box.box]) });
    this.write(() => this.anno.addAnnotation(toAnnotation(box)));
    this.select(box.id);
  }

  /** @param {string} id */
  remove(id) {
    this.boxes.delete(id);
    this.write(() => this.anno.removeAnnotation(id));
  }

  /** @param {string | null} id */
  select(id) {
    if (id) this.anno.setSelected(id);
    else this.anno.cancelSelected();
  }

  /** Drawing mode: the next drag on the image draws a box (nothing stays selected, so it does). */
  startDrawing() {
    this.anno.cancelSelected();
    this.anno.setDrawingEnabled(true);
  }

  stopDrawing() {
    this.anno.setDrawingEnabled(false);
  }

  get drawing() {
    return this.anno.isDrawingEnabled();
  }

  /** Boxes live on the key slice: hidden (and not editable) elsewhere. @param {boolean} visible */
  setVisible(visible) {
    if (!visible) this.anno.cancelSelected();
    this.anno.setVisible(visible);
    this.anno.element.classList.toggle("hidden-boxes", !visible);
  }

  destroy() {
    this.anno.element.removeEventListener("pointerdown", this.onPointerDown, true);
    window.removeEventListener("pointermove", this.onPointerMove, true);
    window.removeEventListener("pointerup", this.onPointerUp, true);
    this.hooks = { onEdited() {}, onSelect() {}, newBox: this.hooks.newBox };
    this.anno.setDrawingEnabled(false);
    this.anno.cancelSelected(); // an open editor torn down mid-flight throws in Annotorious
    this.anno.destroy();
  }

  /** @param {() => void} fn */
  write(fn) {
    this.applying = true;
    try {
      fn();
    } finally {
      this.applying = false;
    }
  }

  /** After a pointer gesture: take in what Annotorious changed, once, and keep boxes straight. */
  finishGesture() {
    const gesture = this.gesture;
    this.gesture = null;
    if (!gesture) return;
    // Annotorious reads a quick drag that ends off the box as a click on empty image and drops the
    // selection: a resize must not close the box's editor
    if (gesture.dragged && gesture.selected && !this.selected && this.boxes.has(gesture.selected)) this.select(gesture.selected);
    if (!this.changed) return;
    this.changed = false;
    let created = null;
    const { width, height } = this.canvas;
    for (const a of this.anno.getAnnotations()) {
      const g = a.target.selector.geometry;
      const x1 = Math.max(0, Math.min(g.x, width - 1));
      const y1 = Math.max(0, Math.min(g.y, height - 1));
      /** @type {Rect} */
      const rect = [x1, y1, Math.min(width, Math.max(x1 + 1, g.x + g.w)), Math.min(height, Math.max(y1 + 1, g.y + g.h))];
      const known = this.boxes.get(a.id);
      if (known) {
        this.boxes.set(a.id, { ...known, box: rect });
      } else { // just drawn: it becomes a box with a guessed name
        created = { ...this.hooks.newBox(rect, [...this.boxes.values()]), id: a.id };
        this.boxes.set(a.id, created);
      }
      // axis-aligned only: a rotation (or a box dragged off the image) is put back as it is kept
      if (!known || g.rot || rect[0] !== g.x || rect[1] !== g.y || rect[2] !== g.x + g.w || rect[3] !== g.y + g.h) {
        this.write(() => this.anno.updateAnnotation(toAnnotation(/** @type {Box} */ (this.boxes.get(a.id)))));
      }
    }
    if (created) {
      this.stopDrawing();
      this.select(created.id);
    }
    this.hooks.onEdited(this.list(), created ? "added" : "edited");
  }
}
