// DiscScope annotation page: wires the API client, upload, worklist, study view, router and
// keyboard shortcuts. Talks only to the REST API (config.js says where it is).

import { createApi } from "./api.js";
import { SHORTCUTS, shortcutFor } from "./keyboard.js";
import { StudyView } from "./review.js";
import { startRouter, studyHash } from "./router.js";
import { UploadRefused, postToS3, prepareUpload } from "./upload.js";
import { Worklist } from "./worklist.js";

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
// @ts-ignore set by config.js (and auth.js in AWS)
const CONFIG = window.DISCSCOPE_CONFIG || {};

function main() {
  if (!CONFIG.apiUrl) {
    $("upload-error").textContent = "config.js does not say where the API is.";
    $("upload-error").hidden = false;
    return;
  }
  const api = createApi(CONFIG);
  const worklist = new Worklist({
    list: $("study-list"), more: $("more-studies"), filters: $("list-filters"), count: $("list-count"),
    reviewer: $("list-reviewer"), refresh: $("refresh-list"), who: $("who"),
  }, api.listStudies);
  /** @type {{go: (hash: string) => void}} */
  let router = { go() {} };
  const view = new StudyView(api, {
    next: (step) => worklist.neighbour(step),
    go: (id) => router.go(studyHash(id)),
    changed: () => worklist.refresh(),
  });
  const mayLeave = () => !view.dirty || window.confirm("This study has unsaved edits. Leave without saving them?");
  router = startRouter((route) => {
    if (route.view === "study") {
      worklist.mark(route.id);
      view.open(route.id);
    } else {
      view.close();
      worklist.mark(null);
      $("study").hidden = true;
      $("home").hidden = false;
    }
  }, mayLeave);
  window.addEventListener("beforeunload", (e) => {
    if (view.dirty) {
      e.preventDefault();
      e.returnValue = ""; // the browser asks "Leave site? Changes you made may not be saved."
    }
  });
  setupUpload(api, (id) => {
    router.go(studyHash(id));
    worklist.refresh();
  });
  setupKeys(view, worklist, router);
  worklist.refresh();
  api.currentModel().then((m) => ($("model-version").textContent = `model ${m.model_version}`)).catch(() => {});
  // @ts-ignore a handle for tests and debugging
  window.DiscScopeApp = { state: view, worklist };
}

/**
 * @param {ReturnType<typeof createApi>} api
 * @param {(studyId: string) => void} opened
 */
function setupUpload(api, opened) {
  const zone = $("dropzone");
  const input = $("file-input");
  const err = $("upload-error");
  /** @param {FileList | File[]} fileList */
  async function handle(fileList) {
    err.hidden = true;
    let prepared;
    try {
      prepared = await prepareUpload([...fileList]);
    } catch (e) {
      err.textContent = e instanceof UploadRefused ? e.message : `The files cannot be read: ${/** @type {Error} */ (e).message}`;
      err.hidden = false;
      return;
    }
    $("upload-progress").hidden = false;
    $("upload-bar").value = 0;
    const what = prepared.slices > 1 ? `${prepared.slices} slices` : prepared.name;
    $("upload-text").textContent = `Uploading ${what}…`;
    try {
      const created = await api.createStudy({ filename: prepared.name, content_type: prepared.contentType, size: prepared.blob.size });
      await postToS3(created.upload, prepared.blob, (f) => {
        $("upload-bar").value = Math.round(f * 100);
        $("upload-text").textContent = `Uploading ${what}: ${Math.round(f * 100)} %`;
      });
      $("upload-text").textContent = `Uploaded ${what}.`;
      opened(created.study_id);
    } catch (e) {
      const x = /** @type {any} */ (e);
      err.textContent = x.code ? `${x.code}: ${x.message}` : x.message;
      err.hidden = false;
      $("upload-progress").hidden = true;
    }
  }
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      e.stopPropagation();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    handle(input.files);
    input.value = "";
  });
  zone.addEventListener("dragover", (/** @type {DragEvent} */ e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (/** @type {DragEvent} */ e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer) handle(e.dataTransfer.files);
  });
}

/**
 * One keydown handler for the whole page (capture phase: Annotorious' own Ctrl+Z must not run).
 * @param {StudyView} view
 * @param {Worklist} worklist
 * @param {{go: (hash: string) => void}} router
 */
function setupKeys(view, worklist, router) {
  const help = $("help");
  const body = $("help-body");
  for (const s of SHORTCUTS.filter((x, i, all) => all.findIndex((y) => y.keys === x.keys) === i)) {
    const tr = document.createElement("tr");
    const k = document.createElement("th");
    k.scope = "row";
    k.innerHTML = "<kbd></kbd>";
    k.firstElementChild.textContent = s.keys;
    const d = document.createElement("td");
    d.textContent = s.help;
    tr.append(k, d);
    body.append(tr);
  }
  const toggleHelp = () => (help.open ? help.close() : help.showModal());
  $("help-button").addEventListener("click", toggleHelp);

  /** @param {number} step */
  const openNeighbour = (step) => {
    const id = worklist.neighbour(step);
    if (id) router.go(studyHash(id));
  };
  window.addEventListener("keydown", (e) => {
    const s = shortcutFor(e);
    if (!s || e.isComposing) return;
    const target = /** @type {HTMLElement} */ (e.target);
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || target.isContentEditable;
    const onControl = ["BUTTON", "A"].includes(target.tagName) || target.getAttribute("role") === "button";
    const modified = e.ctrlKey || e.metaKey;
    // fields keep their keys (Esc and Ctrl shortcuts aside); buttons and links keep Enter and Space
    if (typing && !modified && s.command !== "escape") return;
    if (onControl && (e.key === "Enter" || e.key === " ")) return;
    if (help.open && s.command !== "help") return; // the dialog handles Esc itself
    const reviewing = !$("review").hidden && !!view.layer;
    const done = run(s.command, s.arg, e, reviewing);
    if (done) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, true);

  /**
   * @param {string} command @param {any} arg @param {KeyboardEvent} e @param {boolean} reviewing
   * @returns {boolean} whether the key was used
   */
  function run(command, arg, e, reviewing) {
    if (command === "help") {
      toggleHelp();
      return true;
    }
    if (command === "nextStudy" || command === "previousStudy") {
      openNeighbour(command === "nextStudy" ? 1 : -1);
      return true;
    }
    if (command === "undo" || command === "redo") {
      if (reviewing) view.step(command);
      return true; // never Annotorious' own history
    }
    if (!reviewing) return false;
    const v = view.viewer;
    switch (command) {
      case "escape":
        if (view.layer && view.layer.drawing) view.stopDrawing();
        else if (view.selected) view.select(null);
        else return false;
        return true;
      case "addBox": view.startDrawing(); return true;
      case "placeBox":
        if (!view.layer || !view.layer.drawing) return false;
        view.placeBox();
        return true;
      case "deleteBox": return view.deleteSelected();
      case "nextDisc": view.selectNeighbour(1); return true;
      case "previousDisc": view.selectNeighbour(-1); return true;
      case "toggleLdh": return view.changeSelected((b) => ({ ...b, herniated: !b.herniated }));
      case "renumber": return view.renumberFrom(arg);
      case "moveBox":
      case "resizeBox":
        if (view.selected && v.onKeySlice) return view.nudge(e);
        if (command === "moveBox" && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
          v.setSlice(v.slice + (e.key === "ArrowDown" ? 1 : -1));
          return true;
        }
        return false;
      case "save": view.save("correction", false); return true;
      case "saveNext": view.save("correction", true); return true;
      case "accept": view.save("accept", false); return true;
      case "acceptNext": view.save("accept", true); return true;
      case "slice": v.setSlice(v.slice + arg); return true;
      case "keySlice": v.setSlice(v.keySlice); return true;
      case "tool": v.setTool(arg); return true;
      case "preset": v.preset(arg); return true;
      case "zoom": v.zoomBy(arg); return true;
      case "fit": v.fit(); return true;
      case "mask": {
        const box = $("mask-toggle");
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change"));
        return true;
      }
      default: return false;
    }
  }
}

main();
