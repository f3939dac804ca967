// The boxes a reviewer edits, and what they mean: level names, herniation, where each box came from.
// Pure functions (no DOM), unit-tested under Node.

/** Levels from the top of the image down (superior to inferior). */
export const LEVELS = ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"];
/** The levels of the YOLO training classes; T12-L1 is kept with a review but not trained on. */
export const TRAINING_LEVELS = LEVELS.slice(1);
export const LABELS = LEVELS.flatMap((level) => [level, `${level}_LDH`]);
const TOLERANCE_PX = 0.5;

/**
 * @typedef {[number, number, number, number]} Rect  x1, y1, x2, y2 in key-slice pixels
 * @typedef {{id: string, box: Rect, level: string, herniated: boolean, modelDisc: number | null}} Box
 *   modelDisc: index of the model's disc this box came from; null for a box the reviewer drew
 * @typedef {{level: string, box: Rect, probability?: number, herniated: boolean,
 *   pfirrmann?: number | null, bulging_probability?: number | null}} ModelDisc
 * @typedef {{model_disc?: number | null, level: string, box: Rect, herniated: boolean}} SavedDisc
 */

/** @param {{level: string, herniated: boolean}} box */
export const labelOf = (box) => (box.herniated ? `${box.level}_LDH` : box.level);

/** @param {string} label @returns {{level: string, herniated: boolean}} */
export function parseLabel(label) {
  const herniated = label.endsWith("_LDH");
  return { level: herniated ? label.slice(0, -4) : label, herniated };
}

/** @param {Rect} a @param {Rect} b */
function iou(a, b) {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const area = (/** @type {Rect} */ r) => (r[2] - r[0]) * (r[3] - r[1]);
  return (w * h) / (area(a) + area(b) - w * h);
}

/**
 * The boxes to show for a study: its latest review, else the model's discs.
 * @param {{discs?: ModelDisc[], reviewed_discs?: SavedDisc[]}} study
 * @param {() => string} newId
 * @returns {Box[]}
 */
export function boxesFromStudy(study, newId) {
  const model = study.discs || [];
  if (study.reviewed_discs) {
    return study.reviewed_discs.map((d) => {
      let modelDisc = d.model_disc ?? null;
      if (d.model_disc === undefined) { // reviews saved before boxes recorded their origin
        const best = model.map((m, i) => [iou(m.box, d.box), i]).sort((x, y) => y[0] - x[0])[0];
        modelDisc = best && best[0] >= 0.5 ? best[1] : null;
      }
      return { id: newId(), box: [...d.box], level: d.level, herniated: !!d.herniated, modelDisc };
    });
  }
  return model.map((d, i) => ({ id: newId(), box: [...d.box], level: d.level, herniated: !!d.herniated, modelDisc: i }));
}

/**
 * The request body of a correction: training levels in `discs`, the others (T12-L1) in `other_discs`.
 * @param {Box[]} boxes
 */
export function toPayload(boxes) {
  const round = (/** @type {number} */ v) => Math.round(v * 10) / 10;
  const disc = (/** @type {Box} */ b) => ({
    box: b.box.map(round), level: b.level, herniated: b.herniated,
    ...(b.modelDisc === null ? {} : { model_disc: b.modelDisc }),
  });
  return {
    discs: boxes.filter((b) => TRAINING_LEVELS.includes(b.level)).map(disc),
    other_discs: boxes.filter((b) => !TRAINING_LEVELS.includes(b.level)).map(disc),
  };
}

/**
 * Where a box came from and what the model said about it. A probability belongs to the model's
 * disc, whatever the box is now called; a drawn box has none.
 * @param {Box} box
 * @param {ModelDisc[]} model
 * @returns {{kind: "model" | "edited" | "new", probability: number | null, changes: string[]}}
 */
export function provenance(box, model) {
  const origin = box.modelDisc === null ? undefined : model[box.modelDisc];
  if (!origin) return { kind: "new", probability: null, changes: [] };
  const changes = [];
  const [ax1, ay1, ax2, ay2] = origin.box;
  const [bx1, by1, bx2, by2] = box.box;
  const sizeChanged = Math.abs((ax2 - ax1) - (bx2 - bx1)) > TOLERANCE_PX || Math.abs((ay2 - ay1) - (by2 - by1)) > TOLERANCE_PX;
  if (sizeChanged) changes.push("resized");
  else if (Math.abs(ax1 - bx1) > TOLERANCE_PX || Math.abs(ay1 - by1) > TOLERANCE_PX) changes.push("moved");
  if (origin.level !== box.level) changes.push(`was ${origin.level}`);
  if (!!origin.herniated !== box.herniated) changes.push(box.herniated ? "marked LDH" : "LDH removed");
  const probability = typeof origin.probability === "number" ? origin.probability : null;
  return { kind: changes.length ? "edited" : "model", probability, changes };
}

/** Levels carried by more than one box. @param {Box[]} boxes @returns {string[]} */
export function duplicateLevels(boxes) {
  const counts = new Map();
  boxes.forEach((b) => counts.set(b.level, (counts.get(b.level) || 0) + 1));
  return LEVELS.filter((level) => counts.get(level) > 1);
}

const centreY = (/** @type {Box} */ b) => (b.box[1] + b.box[3]) / 2;

/** Boxes from the top of the image down. @param {Box[]} boxes */
export const topDown = (boxes) => [...boxes].sort((a, b) => centreY(a) - centreY(b));

/**
 * "This disc is `level`": names every box by its place along the spine from that one. Boxes that
 * would fall outside T12-L1..L5-S1 keep their names and are returned in `outside`.
 * @param {Box[]} boxes
 * @param {string} anchorId
 * @param {string} level
 * @returns {{boxes: Box[], outside: Box[]}}
 */
export function renumber(boxes, anchorId, level) {
  const order = topDown(boxes);
  const at = order.findIndex((b) => b.id === anchorId);
  const base = LEVELS.indexOf(level);
  if (at < 0 || base < 0) return { boxes, outside: [] };
  const names = new Map(order.map((b, i) => [b.id, LEVELS[base + i - at]]));
  const outside = boxes.filter((b) => !names.get(b.id));
  return { boxes: boxes.map((b) => (names.get(b.id) ? { ...b, level: names.get(b.id) } : b)), outside };
}

/**
 * A name for a box just drawn: from its neighbour above or below, else the first level not used.
 * @param {Box[]} others
 * @param {Rect} rect
 */
export function guessLevel(others, rect) {
  const y = (rect[1] + rect[3]) / 2;
  const above = topDown(others).filter((b) => centreY(b) < y).pop();
  const below = topDown(others).find((b) => centreY(b) >= y);
  const used = new Set(others.map((b) => b.level));
  const candidates = [
    above && LEVELS[LEVELS.indexOf(above.level) + 1],
    below && LEVELS[LEVELS.indexOf(below.level) - 1],
  ].filter((l) => l && !used.has(l));
  return candidates[0] || LEVELS.slice().reverse().find((l) => !used.has(l)) || "L4-L5";
}

/**
 * Where a box placed from the keyboard goes: one disc spacing below the lowest box (or above the
 * highest when there is no room), sized like the others; the image centre when there are none.
 * @param {Box[]} boxes
 * @param {{width: number, height: number}} image
 * @returns {Rect}
 */
export function placeBox(boxes, image) {
  const clamp = (/** @type {Rect} */ r) => {
    const w = Math.min(r[2] - r[0], image.width);
    const h = Math.min(r[3] - r[1], image.height);
    const x1 = Math.min(Math.max(r[0], 0), image.width - w);
    const y1 = Math.min(Math.max(r[1], 0), image.height - h);
    return /** @type {Rect} */ ([x1, y1, x1 + w, y1 + h]);
  };
  if (!boxes.length) {
    const w = Math.round(image.width / 5);
    const h = Math.round(image.height / 14);
    return clamp([(image.width - w) / 2, (image.height - h) / 2, (image.width + w) / 2, (image.height + h) / 2]);
  }
  const order = topDown(boxes);
  const last = order[order.length - 1];
  const first = order[0];
  const step = order.length > 1 ? (centreY(last) - centreY(first)) / (order.length - 1) : (last.box[3] - last.box[1]) * 2.5;
  const dy = last.box[3] + step <= image.height ? step : -step;
  const from = dy > 0 ? last : first;
  return clamp([from.box[0], from.box[1] + dy, from.box[2], from.box[3] + dy]);
}

/** @param {Box[]} a @param {Box[]} b */
export function sameBoxes(a, b) {
  const key = (/** @type {Box[]} */ list) => JSON.stringify(list.map((x) => [x.level, x.herniated, x.modelDisc, x.box.map((v) => Math.round(v * 10))]));
  return key(a) === key(b);
}
