// The study view: live status, a clear failure, the model's warnings, and the review session
// (boxes on the key slice, their names and LDH flags, undo/redo, save or accept as a new version,
// the review history).

import { BoxLayer } from "./annotator.js";
import {
  LABELS, LEVELS, boxesFromStudy, duplicateLevels, guessLevel, labelOf, parseLabel, placeBox, provenance,
  renumber, toPayload, topDown,
} from "./discs.js";
import { History } from "./history.js";
import { shortTime } from "./worklist.js";
import { PRESETS } from "./windowing.js";
import { Viewer } from "./viewer.js";

/**
 * @typedef {import("./discs.js").Box} Box
 * @typedef {import("./discs.js").Rect} Rect
 * @typedef {ReturnType<typeof import("./api.js").createApi>} Api
 */

const TERMINAL = ["SUCCEEDED", "FAILED", "REVIEWED"];
/** What a reader can do about a failure, by its code. */
const FAILURE_HINTS = {
  NO_SPINE_FOUND: "No lumbar disc was found in this image. Check that it is a sagittal lumbar MRI series.",
  TRUNCATED_FILE: "The file is incomplete (cut short while copying or exporting). Export or copy it again and upload it.",
  EMPTY_FILE: "The file is empty. Export the study again.",
  NOT_AN_IMAGE: "This file is not an image. Upload the MRI series itself (MHA, NIfTI, DICOM ZIP, PNG or JPEG).",
  UNSUPPORTED_FORMAT: "This format is not supported. Use MHA, NIfTI, a DICOM series as ZIP, PNG or JPEG.",
  INCONSISTENT_SLICES: "The slices differ in size: upload the slices of one series only.",
  ENDPOINT_UNAVAILABLE: "The analysis service was unavailable. The upload is kept: try again shortly.",
};
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @param {string} url @returns {Promise<HTMLImageElement>} */
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.crossOrigin = "anonymous";
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${url.split("?")[0].split("/").pop()}`));
    img.src = url;
  });
}

export class StudyView {
  /**
   * @param {Api} api
   * @param {{next: (step: number) => string | null, go: (id: string) => void, changed: () => void}} nav
   */
  constructor(api, nav) {
    this.api = api;
    this.nav = nav;
    /** @type {any} */ this.study = null;
    /** @type {string | null} */ this.id = null;
    /** @type {BoxLayer | null} */ this.layer = null;
    /** @type {History<Box[]> | null} */ this.history = null;
    /** @type {string | null} */ this.selected = null;
    this.polling = 0;
    this.saving = false;
    this.ids = 0;
    this.viewer = new Viewer({ viewport: $("viewer"), stage: $("stage"), canvas: /** @type {HTMLCanvasElement} */ ($("canvas")) }, {
      onSlice: () => this.showSlice(),
      onView: () => this.showView(),
    });
    this.bind();
  }

  /** Test and debugging handle: the Annotorious instance. */
  get anno() {
    return this.layer ? this.layer.anno : null;
  }

  /** Edits the server does not have yet. */
  get dirty() {
    return !!this.history && this.history.dirty;
  }

  get boxes() {
    return this.layer ? this.layer.list() : [];
  }

  newId = () => `box-${++this.ids}`;

  // ------------------------------------------------------------------ opening and status
  /** @param {string} id */
  async open(id) {
    if (id === this.id && this.study) return;
    this.close();
    this.id = id;
    $("study").hidden = false;
    $("home").hidden = true;
    $("review").hidden = true;
    $("study-error").hidden = true;
    $("review-warning").hidden = true;
    $("stale").hidden = true;
    $("saved").textContent = "";
    $("study-title").textContent = "Study";
    $("study-status").textContent = "Loading…";
    await this.tick(id);
  }

  close() {
    clearTimeout(this.polling);
    if (this.layer) this.layer.destroy();
    this.layer = null;
    this.history = null;
    this.selected = null;
    this.study = null;
    this.id = null;
  }

  /** @param {string} id */
  async tick(id) {
    let study;
    try {
      study = await this.api.getStudy(id);
    } catch (e) {
      if (id !== this.id) return;
      const err = /** @type {import("./api.js").ApiError} */ (e);
      $("study-status").textContent = "";
      this.showError(err.status === 404 ? "NOT_FOUND" : err.code, err.status === 404 ? "No such study." : err.message);
      return;
    }
    if (id !== this.id) return; // the reader has moved on
    const before = this.study && this.study.status;
    this.study = study;
    $("study-title").textContent = study.filename || id;
    this.setSteps(study.status);
    if (study.status === "FAILED") {
      $("study-status").textContent = "Processing failed. The upload is kept.";
      this.showError(study.error_code, study.message);
    } else if (TERMINAL.includes(study.status)) {
      this.showStatus();
      if (!before || !TERMINAL.includes(before)) await this.showReview();
    } else {
      $("study-status").textContent = study.status === "UPLOADED" ? "Uploaded; waiting to be processed…" : "Processing…";
    }
    if (before !== study.status) this.nav.changed();
    if (!TERMINAL.includes(study.status)) this.polling = window.setTimeout(() => this.tick(id), 1000);
  }

  /** @param {string} code @param {string} message */
  showError(code, message) {
    $("study-error-code").textContent = code || "ERROR";
    $("study-error-message").textContent = message || "";
    $("study-error-hint").textContent = FAILURE_HINTS[/** @type {keyof FAILURE_HINTS} */ (code)] || "The upload is kept; fix the cause and upload the study again.";
    $("study-error").hidden = false;
  }

  /** @param {string} status */
  setSteps(status) {
    const done = /** @type {HTMLElement} */ (document.querySelector('#status-steps li[data-step="DONE"]'));
    done.textContent = status === "FAILED" ? "Failed" : status === "REVIEWED" ? "Reviewed" : "Done";
    const order = { UPLOADED: 0, PROCESSING: 1, SUCCEEDED: 2, FAILED: 2, REVIEWED: 2 };
    const at = order[/** @type {keyof order} */ (status)] ?? 0;
    document.querySelectorAll("#status-steps li").forEach((li, i) => {
      li.className = i < at ? "done" : i === at ? (status === "FAILED" ? "failed" : TERMINAL.includes(status) ? "done" : "current") : "";
      if (i === at) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    });
  }

  showStatus() {
    const s = this.study;
    const review = s.review;
    const reviewed = review
      ? ` Reviewed: ${review.kind === "accept" ? "model predictions accepted" : "corrections saved"} by ${(review.by && (review.by.name || review.by.id)) || "unknown"}, ${shortTime(review.at)} (version ${review.version || s.feedback_version}).`
      : " Not reviewed yet.";
    $("study-status").textContent = `Done: ${(s.discs || []).length} discs, model ${s.model_version}.${reviewed}`;
  }

  showWarning() {
    const s = this.study;
    const box = $("review-warning");
    box.hidden = !s.needs_review;
    if (!s.needs_review) return;
    const facts = [];
    if (typeof s.naming_confidence === "number") facts.push(`level naming confidence ${s.naming_confidence.toFixed(2)}`);
    if (s.spacing_source === "estimated") facts.push("pixel spacing estimated, not from the header");
    $("review-warning-text").textContent = `the model flagged this study${facts.length ? ` (${facts.join("; ")})` : ""}. Check the level names before saving.`;
    const list = $("review-reasons");
    list.textContent = "";
    for (const reason of s.review_reasons || []) {
      const li = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = reason.code;
      li.append(`${reason.message} `, code);
      list.append(li);
    }
  }

  async showReview() {
    const study = this.study;
    const a = study.artifacts || {};
    let images;
    try {
      const [preview, mask, slices, slicesMask] = await Promise.all([
        loadImage(a["preview.png"]), loadImage(a["mask.png"]),
        a["slices.jpg"] ? loadImage(a["slices.jpg"]) : null, a["slices_mask.png"] ? loadImage(a["slices_mask.png"]) : null]);
      images = { preview, mask, slices, slicesMask };
    } catch (e) {
      this.showError("IMAGES_UNAVAILABLE", `The result images cannot be shown: ${/** @type {Error} */ (e).message}`);
      return;
    }
    if (study !== this.study) return;
    this.showWarning();
    $("review").hidden = false;
    this.viewer.load(images, { keySlice: study.slice_index || 0, count: study.num_slices || 1, layout: study.slices || null });
    const slider = /** @type {HTMLInputElement} */ ($("slice"));
    slider.max = String(this.viewer.count - 1);
    slider.disabled = this.viewer.count < 2;
    const mark = document.createElement("option");
    mark.value = String(this.viewer.keySlice);
    mark.label = "key slice";
    $("key-slice-mark").replaceChildren(mark);
    if (this.layer) this.layer.destroy();
    this.layer = new BoxLayer(/** @type {HTMLCanvasElement} */ ($("canvas")), {
      onEdited: (boxes) => this.commit(boxes),
      onSelect: (id) => this.onSelect(id),
      newBox: (rect, others) => ({ id: this.newId(), box: rect, level: guessLevel(others, rect), herniated: false, modelDisc: null }),
    });
    this.loadBoxes(boxesFromStudy(study, this.newId));
    this.showSlice();
    this.showView();
    this.showHistory();
  }

  /** A fresh session on these boxes (load, after a save). @param {Box[]} boxes */
  loadBoxes(boxes) {
    this.history = new History(boxes);
    this.selected = null;
    /** @type {BoxLayer} */ (this.layer).setBoxes(boxes);
    this.showBoxes();
  }

  // --------------------------------------------------------------------- editing
  /** Takes in a finished edit (one undo step). @param {Box[]} [boxes] */
  commit(boxes = this.boxes) {
    if (!this.history) return;
    this.history.push(boxes);
    $("saved").textContent = "";
    this.showBoxes();
  }

  /** @param {string | null} id */
  onSelect(id) {
    this.selected = id && this.layer && this.layer.boxes.has(id) ? id : null;
    this.showEditor();
  }

  /** @param {string | null} id */
  select(id) {
    if (!this.layer) return;
    this.layer.select(id);
    this.onSelect(id);
  }

  /** @param {(box: Box) => Box} change */
  changeSelected(change) {
    const box = this.boxes.find((b) => b.id === this.selected);
    if (!box || !this.layer) return false;
    this.layer.update(change(box));
    this.commit();
    return true;
  }

  /** @param {string} level */
  renumberFrom(level) {
    if (!this.selected || !this.layer) return false;
    const { boxes, outside } = renumber(this.boxes, this.selected, level);
    this.layer.setBoxes(boxes);
    this.commit(boxes);
    if (outside.length) this.warn(`${outside.length} box(es) would fall outside T12-L1…L5-S1 and kept their names: check them.`);
    return true;
  }

  startDrawing() {
    if (!this.layer) return;
    if (!this.viewer.onKeySlice) this.viewer.setSlice(this.viewer.keySlice);
    this.viewer.setTool("edit");
    this.layer.startDrawing();
    this.selected = null;
    this.showEditor();
    this.showDrawing();
  }

  stopDrawing() {
    if (this.layer) this.layer.stopDrawing();
    this.showDrawing();
  }

  /** The keyboard's way to add a box: placed below the lowest one, selected, ready to move. */
  placeBox() {
    if (!this.layer) return;
    const boxes = this.boxes;
    const canvas = /** @type {HTMLCanvasElement} */ ($("canvas"));
    const rect = placeBox(boxes, { width: canvas.width, height: canvas.height });
    const box = { id: this.newId(), box: rect, level: guessLevel(boxes, rect), herniated: false, modelDisc: null };
    this.layer.stopDrawing();
    this.layer.add(box);
    this.showDrawing();
    this.commit();
    this.onSelect(box.id);
  }

  deleteSelected() {
    if (!this.selected || !this.layer) return false;
    this.layer.remove(this.selected);
    this.selected = null;
    this.commit();
    this.showEditor();
    return true;
  }

  /** @param {number} step */
  selectNeighbour(step) {
    const order = topDown(this.boxes);
    if (!order.length) return;
    const at = order.findIndex((b) => b.id === this.selected);
    const next = order[at < 0 ? (step > 0 ? 0 : order.length - 1) : Math.max(0, Math.min(order.length - 1, at + step))];
    this.select(next.id);
  }

  /** Arrow keys move the selected box, Alt+arrows resize it (Shift: 5 px). @param {KeyboardEvent} e */
  nudge(e) {
    const box = this.boxes.find((b) => b.id === this.selected);
    if (!box || !this.layer) return false;
    const step = e.shiftKey ? 5 : 1;
    const [dx, dy] = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[
      /** @type {"ArrowLeft"} */ (e.key)] || [0, 0];
    const { width, height } = /** @type {HTMLCanvasElement} */ ($("canvas"));
    let [x1, y1, x2, y2] = box.box;
    if (e.altKey) {
      x2 = Math.max(x1 + 2, Math.min(width, x2 + dx));
      y2 = Math.max(y1 + 2, Math.min(height, y2 + dy));
    } else {
      const mx = Math.max(-x1, Math.min(width - x2, dx));
      const my = Math.max(-y1, Math.min(height - y2, dy));
      [x1, y1, x2, y2] = [x1 + mx, y1 + my, x2 + mx, y2 + my];
    }
    this.layer.update({ ...box, box: [x1, y1, x2, y2] });
    this.commit();
    return true;
  }

  /** @param {"undo" | "redo"} which */
  step(which) {
    if (!this.history || !this.layer) return;
    const state = which === "undo" ? this.history.undo() : this.history.redo();
    if (!state) return;
    this.layer.setBoxes(state);
    this.onSelect(this.layer.selected);
    this.showBoxes();
  }

  // ------------------------------------------------------------------------ saving
  /** @param {"correction" | "accept"} kind @param {boolean} next */
  async save(kind, next) {
    if (!this.study || !this.layer || this.saving) return;
    if (kind === "accept" && this.dirty && !window.confirm("Accept the model's result and drop your unsaved edits?")) return;
    const duplicates = duplicateLevels(this.boxes);
    if (kind === "correction" && duplicates.length &&
        !window.confirm(`${duplicates.join(", ")} is on more than one box. Save anyway?`)) return;
    const out = $("saved");
    out.className = "saved";
    out.textContent = "Saving…";
    $("stale").hidden = true;
    this.saving = true;
    const id = this.study.study_id;
    const base = this.study.feedback_version || 0;
    const nextId = next ? this.nav.next(1) : null;
    try {
      const saved = kind === "accept" ? await this.api.accept(id, base) : await this.api.saveCorrections(id, toPayload(this.boxes), base);
      const study = await this.api.getStudy(id);
      if (id !== this.id) return;
      this.study = study;
      this.setSteps(study.status);
      this.showStatus();
      this.showHistory();
      if (kind === "accept") this.loadBoxes(boxesFromStudy(study, this.newId));
      else if (this.history) this.history.markSaved();
      this.showBoxes();
      const who = saved.reviewer ? saved.reviewer.name || saved.reviewer.id : "you";
      out.textContent = `${kind === "accept" ? "Model predictions accepted" : "Corrections saved"}: version ${saved.version}, ${saved.discs.length} boxes, by ${who} at ${shortTime(saved.saved_at)}.`;
      this.nav.changed();
      if (nextId) this.nav.go(nextId);
      else if (next) out.textContent += " No further study in the worklist.";
    } catch (e) {
      const err = /** @type {import("./api.js").ApiError} */ (e);
      out.className = "saved error";
      if (err.code === "STALE_VERSION") {
        out.textContent = "Not saved: someone saved a newer review.";
        $("stale-text").textContent = err.message;
        $("stale").hidden = false;
      } else {
        out.textContent = `Not saved: ${err.code}: ${err.message}`;
      }
    } finally {
      this.saving = false;
    }
  }

  /** Drops local edits and shows the study as the server has it now. */
  async reload() {
    const id = this.id;
    if (!id) return;
    if (this.history) this.history.markSaved(); // the reader chose to drop the edits
    this.close();
    await this.open(id);
  }

  // ------------------------------------------------------------------------ showing
  showBoxes() {
    if (!this.layer) return;
    const boxes = this.boxes;
    this.showLabels(boxes);
    this.showTable(boxes);
    this.showBoxButtons(boxes);
    this.showEditor();
    this.showDrawing();
    const duplicates = duplicateLevels(boxes);
    this.warn(duplicates.length ? `${duplicates.join(", ")} is on more than one box.` : "");
    /** @type {HTMLButtonElement} */ ($("undo")).disabled = !this.history || !this.history.canUndo;
    /** @type {HTMLButtonElement} */ ($("redo")).disabled = !this.history || !this.history.canRedo;
    $("save").textContent = this.dirty ? "Save corrections •" : "Save corrections";
  }

  /** @param {string} text */
  warn(text) {
    $("edit-warning").textContent = text;
    $("edit-warning").hidden = !text;
  }

  /** @param {Box} box */
  describe(box) {
    const p = provenance(box, this.study.discs || []);
    const score = p.probability === null ? "" : p.probability.toFixed(2);
    if (p.kind === "new") return { short: "new", text: "Drawn by you: the model has no score for this box.", score, p };
    if (p.kind === "edited") {
      return { short: "edited", text: `Edited (${p.changes.join(", ")}): P(LDH) ${score} is the model's, for the disc it found here.`, score, p };
    }
    return { short: "model", text: `The model's disc: P(LDH) ${score}.`, score, p };
  }

  /** @param {Box[]} boxes */
  showLabels(boxes) {
    const layer = $("labels");
    layer.textContent = "";
    const canvas = /** @type {HTMLCanvasElement} */ ($("canvas"));
    for (const box of boxes) {
      const d = this.describe(box);
      const tag = document.createElement("span");
      tag.className = `box-label${box.herniated ? " ldh" : ""}${d.p.kind !== "model" ? " changed" : ""}`;
      tag.dataset.id = box.id;
      tag.textContent = `${labelOf(box)} ${d.p.kind === "new" ? "· new" : d.score}${d.p.kind === "edited" ? " · edited" : ""}`;
      tag.style.left = `${(box.box[2] / canvas.width) * 100}%`;
      tag.style.top = `${(box.box[1] / canvas.height) * 100}%`;
      layer.append(tag);
    }
  }

  /** @param {Box[]} boxes */
  showTable(boxes) {
    const body = $("results-body");
    body.textContent = "";
    const model = this.study.discs || [];
    // models that grade discs (Pfirrmann, bulging) get a column for it; older results have none
    const extra = model.some((/** @type {any} */ d) => d.pfirrmann != null || d.bulging_probability != null);
    $("grade-header").hidden = !extra;
    for (const box of topDown(boxes)) {
      const d = this.describe(box);
      const origin = box.modelDisc === null ? null : model[box.modelDisc];
      const tr = document.createElement("tr");
      tr.dataset.id = box.id;
      if (box.herniated) tr.className = "ldh";
      const cells = [box.level, d.score || "—", box.herniated ? "yes" : "no", d.short];
      if (extra) {
        cells.push(origin ? `Pfirrmann ${origin.pfirrmann ?? "—"}, P(bulge) ${origin.bulging_probability != null ? origin.bulging_probability.toFixed(2) : "—"}` : "—");
      }
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
  }

  /** @param {Box[]} boxes */
  showBoxButtons(boxes) {
    const group = $("box-buttons");
    group.textContent = "";
    for (const box of topDown(boxes)) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.id = box.id;
      b.textContent = labelOf(box);
      if (box.herniated) b.className = "ldh";
      b.setAttribute("aria-pressed", String(box.id === this.selected));
      b.addEventListener("click", () => this.select(box.id));
      group.append(b);
    }
  }

  showEditor() {
    const box = this.boxes.find((b) => b.id === this.selected);
    const editor = $("box-editor");
    editor.hidden = !box;
    editor.dataset.id = box ? box.id : "";
    document.querySelectorAll("#box-buttons button").forEach((b) => {
      b.setAttribute("aria-pressed", String(!!box && /** @type {HTMLElement} */ (b).dataset.id === box.id));
    });
    if (!box) return;
    /** @type {HTMLSelectElement} */ ($("box-label")).value = labelOf(box);
    $("box-origin").textContent = this.describe(box).text;
    document.querySelectorAll("#renumber button").forEach((b) => {
      b.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (b).dataset.level === box.level));
    });
  }

  showDrawing() {
    const on = !!this.layer && this.layer.drawing;
    $("add-box").setAttribute("aria-pressed", String(on));
    $("draw-hint").hidden = !on;
  }

  showSlice() {
    const v = this.viewer;
    /** @type {HTMLInputElement} */ ($("slice")).value = String(v.slice);
    $("slice-text").textContent = `${v.slice + 1} / ${v.count}${v.onKeySlice ? " (key slice)" : ` (key slice: ${v.keySlice + 1})`}`;
    $("offkey-note").hidden = v.onKeySlice;
    $("viewer").classList.toggle("offkey", !v.onKeySlice);
    if (this.layer) {
      if (!v.onKeySlice) this.stopDrawing();
      this.layer.setVisible(v.onKeySlice);
    }
  }

  showView() {
    const v = this.viewer;
    $("zoom-text").textContent = `${Math.round(v.zoom * 100)} %`;
    $("wl-text").textContent = v.windowable ? v.windowText : "window/level unavailable";
    const preset = Object.entries(PRESETS).find(([, p]) => p.width === v.window.width && p.center === v.window.center);
    /** @type {HTMLSelectElement} */ ($("wl-preset")).value = preset ? preset[0] : "";
    document.querySelectorAll(".viewer-tools .tool").forEach((b) => {
      b.setAttribute("aria-pressed", String(/** @type {HTMLElement} */ (b).dataset.tool === v.tool));
    });
  }

  showHistory() {
    const list = $("history");
    list.textContent = "";
    const versions = [...(this.study.feedback || [])].reverse(); // newest first
    for (const f of versions) {
      const li = document.createElement("li");
      const who = f.reviewer ? f.reviewer.name || f.reviewer.id : "unknown";
      const what = f.kind === "accept" ? "accepted the model's predictions" : "saved corrections";
      li.innerHTML = "<strong></strong> <span class=\"what\"></span> <time></time>";
      /** @type {HTMLElement} */ (li.querySelector("strong")).textContent = `v${f.version}`;
      /** @type {HTMLElement} */ (li.querySelector(".what")).textContent = `${who} ${what} (${(f.discs || []).length} boxes)`;
      const time = /** @type {HTMLTimeElement} */ (li.querySelector("time"));
      time.dateTime = f.created_at;
      time.textContent = shortTime(f.created_at);
      time.title = f.created_at;
      list.append(li);
    }
    $("history-empty").hidden = versions.length > 0;
  }

  // ------------------------------------------------------------------------ wiring
  bind() {
    const select = /** @type {HTMLSelectElement} */ ($("box-label"));
    for (const label of LABELS) select.append(new Option(label.replace("_LDH", " — herniated (LDH)"), label));
    select.addEventListener("change", () => this.changeSelected((b) => ({ ...b, ...parseLabel(select.value) })));
    const renumberGroup = $("renumber");
    for (const level of LEVELS) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.level = level;
      b.textContent = level;
      b.title = `This disc is ${level}: rename every disc from it`;
      b.addEventListener("click", () => this.renumberFrom(level));
      renumberGroup.append(b);
    }
    $("delete-box").addEventListener("click", () => this.deleteSelected());
    $("add-box").addEventListener("click", () => (this.layer && this.layer.drawing ? this.stopDrawing() : this.startDrawing()));
    $("undo").addEventListener("click", () => this.step("undo"));
    $("redo").addEventListener("click", () => this.step("redo"));
    $("save").addEventListener("click", () => this.save("correction", false));
    $("save-next").addEventListener("click", () => this.save("correction", true));
    $("accept").addEventListener("click", () => this.save("accept", false));
    $("accept-next").addEventListener("click", () => this.save("accept", true));
    $("stale-reload").addEventListener("click", () => this.reload());
    const presets = /** @type {HTMLSelectElement} */ ($("wl-preset"));
    presets.append(new Option("custom", ""));
    for (const [name, p] of Object.entries(PRESETS)) presets.append(new Option(p.label, name));
    presets.addEventListener("change", () => presets.value && this.viewer.preset(/** @type {keyof PRESETS} */ (presets.value)));
    document.querySelectorAll(".viewer-tools .tool").forEach((b) => {
      b.addEventListener("click", () => this.viewer.setTool(/** @type {any} */ (/** @type {HTMLElement} */ (b).dataset.tool)));
    });
    $("zoom-in").addEventListener("click", () => this.viewer.zoomBy(1.25));
    $("zoom-out").addEventListener("click", () => this.viewer.zoomBy(0.8));
    $("fit").addEventListener("click", () => this.viewer.fit());
    const mask = () => this.viewer.setMask(/** @type {HTMLInputElement} */ ($("mask-toggle")).checked,
      Number(/** @type {HTMLInputElement} */ ($("mask-opacity")).value) / 100);
    $("mask-toggle").addEventListener("change", mask);
    $("mask-opacity").addEventListener("input", mask);
    $("slice").addEventListener("input", () => this.viewer.setSlice(Number(/** @type {HTMLInputElement} */ ($("slice")).value)));
    $("slice-prev").addEventListener("click", () => this.viewer.setSlice(this.viewer.slice - 1));
    $("slice-next").addEventListener("click", () => this.viewer.setSlice(this.viewer.slice + 1));
    $("key-slice").addEventListener("click", () => this.viewer.setSlice(this.viewer.keySlice));
  }
}
