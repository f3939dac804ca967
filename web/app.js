// DiscScope annotation page: upload, live status, review on the key slice, correct with
// Annotorious, save or accept. Talks only to the REST API (config.js says where it is).
(function () {
  "use strict";

  const CONFIG = window.DISCSCOPE_CONFIG || {};
  const LEVELS = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"];
  const CLASSES = LEVELS.flatMap((l) => [l, `${l}_LDH`]);
  const MAX_BYTES = 512 * 1024 * 1024;
  const VOLUME_EXT = [".mha", ".nii", ".nii.gz", ".zip"];
  const SLICE_EXT = [".png", ".jpg", ".jpeg"];
  const TERMINAL = ["SUCCEEDED", "FAILED", "REVIEWED"];
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      Object.assign(this, { status, code });
    }
  }

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (CONFIG.apiKey) headers["x-api-key"] = CONFIG.apiKey;
    if (CONFIG.idToken) headers.Authorization = CONFIG.idToken;
    let resp;
    try {
      resp = await fetch(CONFIG.apiUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, "NETWORK", "The API cannot be reached. Check your connection and try again.");
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new ApiError(resp.status, data.error_code || `HTTP_${resp.status}`, data.message || resp.statusText);
    return data;
  }

  // ------------------------------------------------------------------------------- upload
  const lower = (name) => name.toLowerCase();
  const hasExt = (name, exts) => exts.some((e) => lower(name).endsWith(e));

  // Checks the chosen files and turns them into one upload: {name, blob, contentType}.
  async function prepareUpload(files) {
    if (!files.length) throw new Error("No file chosen.");
    if (files.length > 1) {
      const bad = files.filter((f) => !hasExt(f.name, SLICE_EXT));
      if (bad.length) throw new Error(`Several files must all be PNG or JPEG slices; ${bad[0].name} is not.`);
      const sorted = [...files].sort((a, b) => DiscZip.naturalCompare(a.name, b.name));
      const total = sorted.reduce((s, f) => s + f.size, 0);
      if (total > MAX_BYTES) throw new Error(`The slices add up to ${(total / 1048576).toFixed(0)} MB; the limit is 512 MB.`);
      const entries = [];
      for (const f of sorted) entries.push({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) });
      return { name: "slices.zip", blob: DiscZip.makeZip(entries), contentType: "application/zip" };
    }
    const file = files[0];
    if (!hasExt(file.name, VOLUME_EXT.concat(SLICE_EXT)))
      throw new Error(`${file.name}: unsupported file type. Use MHA, NIfTI, a DICOM ZIP, PNG or JPEG.`);
    if (file.size === 0) throw new Error(`${file.name} is empty.`);
    if (file.size > MAX_BYTES) throw new Error(`${file.name} is ${(file.size / 1048576).toFixed(0)} MB; the limit is 512 MB.`);
    const contentType = lower(file.name).endsWith(".zip") ? "application/zip"
      : lower(file.name).endsWith(".gz") ? "application/gzip"
      : hasExt(file.name, [".png"]) ? "image/png"
      : hasExt(file.name, [".jpg", ".jpeg"]) ? "image/jpeg" : "application/octet-stream";
    return { name: file.name, blob: file, contentType };
  }

  function postToS3(upload, blob, onProgress) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      Object.entries(upload.fields).forEach(([k, v]) => form.append(k, v));
      form.append("file", blob);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", upload.url);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(`The upload was refused (HTTP ${xhr.status}).`)));
      xhr.onerror = () => reject(new Error("The upload failed: network error."));
      xhr.send(form);
    });
  }

  async function handleFiles(fileList) {
    const err = $("upload-error");
    err.hidden = true;
    let prepared;
    try {
      prepared = await prepareUpload([...fileList]);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
      return;
    }
    $("upload-progress").hidden = false;
    $("upload-bar").value = 0;
    $("upload-text").textContent = `Uploading ${prepared.name}…`;
    try {
      const created = await api("POST", "/studies", { filename: prepared.name, content_type: prepared.contentType, size: prepared.blob.size });
      await postToS3(created.upload, prepared.blob, (f) => {
        $("upload-bar").value = Math.round(f * 100);
        $("upload-text").textContent = `Uploading ${prepared.name}: ${Math.round(f * 100)} %`;
      });
      $("upload-text").textContent = `Uploaded ${prepared.name}.`;
      location.hash = `#/studies/${created.study_id}`;
      refreshList();
    } catch (e) {
      err.textContent = e.code ? `${e.code}: ${e.message}` : e.message;
      err.hidden = false;
      $("upload-progress").hidden = true;
    }
  }

  function setupUpload() {
    const zone = $("dropzone");
    const input = $("file-input");
    zone.addEventListener("click", () => input.click());
    zone.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        input.click();
      }
    });
    input.addEventListener("change", () => {
      handleFiles(input.files);
      input.value = "";
    });
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      handleFiles(e.dataTransfer.files);
    });
  }

  // ------------------------------------------------------------------------- study list
  let listCursor = null;

  async function refreshList(append = false) {
    try {
      const page = await api("GET", `/studies?limit=15${append && listCursor ? `&cursor=${encodeURIComponent(listCursor)}` : ""}`);
      const list = $("study-list");
      if (!append) list.textContent = "";
      for (const s of page.studies) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = `#/studies/${s.study_id}`;
        a.textContent = s.filename || s.study_id;
        const badge = document.createElement("span");
        badge.className = `badge ${s.status.toLowerCase()}`;
        badge.textContent = s.status.toLowerCase();
        li.append(a, badge);
        list.append(li);
      }
      listCursor = page.next_cursor;
      $("more-studies").hidden = !listCursor;
    } catch (e) {
      $("study-list").textContent = `Cannot load studies: ${e.message}`;
    }
  }

  // ------------------------------------------------------------------------- study view
  const state = { study: null, anno: null, images: {}, undo: [], last: null, slice: 0, polling: null };

  function show(section) {
    $("home").hidden = section !== "home";
    $("study").hidden = section !== "study";
  }

  function setSteps(status) {
    document.querySelector('#status-steps li[data-step="DONE"]').textContent = status === "FAILED" ? "Failed" : "Done";
    const order = { UPLOADED: 0, PROCESSING: 1, SUCCEEDED: 2, FAILED: 2, REVIEWED: 2 };
    const at = order[status] ?? 0;
    document.querySelectorAll("#status-steps li").forEach((li, i) => {
      li.className = i < at ? "done" : i === at ? (status === "FAILED" ? "failed" : TERMINAL.includes(status) ? "done" : "current") : "";
      if (i === at) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    });
  }

  async function openStudy(id) {
    show("study");
    clearInterval(state.polling);
    state.study = null;
    $("review").hidden = true;
    $("study-error").hidden = true;
    $("saved").textContent = "";
    $("study-title").textContent = "Study";
    $("study-status").textContent = "Loading…";
    const tick = async () => {
      let study;
      try {
        study = await api("GET", `/studies/${id}`);
      } catch (e) {
        clearInterval(state.polling);
        $("study-status").textContent = "";
        $("study-error").textContent = e.status === 404 ? "No such study." : `${e.code}: ${e.message}`;
        $("study-error").hidden = false;
        return;
      }
      const before = state.study && state.study.status;
      state.study = study;
      $("study-title").textContent = study.filename || id;
      setSteps(study.status);
      if (study.status === "FAILED") {
        clearInterval(state.polling);
        if (before !== study.status) refreshList();
        $("study-status").textContent = "Processing failed. The upload is kept.";
        $("study-error").textContent = `${study.error_code}: ${study.message}`;
        $("study-error").hidden = false;
      } else if (TERMINAL.includes(study.status)) {
        clearInterval(state.polling);
        const when = study.review ? `; reviewed (${study.review.kind === "accept" ? "predictions accepted" : "corrections saved"} ${study.review.at})` : "";
        $("study-status").textContent = `Done: ${(study.discs || []).length} discs, model ${study.model_version}${when}.`;
        if (before !== study.status) refreshList();
        if (before !== study.status || $("review").hidden) await showReview(study);
      } else {
        $("study-status").textContent = study.status === "UPLOADED" ? "Uploaded; waiting to be processed…" : "Processing…";
      }
    };
    await tick();
    if (state.study && !TERMINAL.includes(state.study.status)) state.polling = setInterval(tick, 1000);
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.crossOrigin = "anonymous";
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`cannot load ${url.split("?")[0]}`));
      img.src = url;
    });
  }

  async function showReview(study) {
    const a = study.artifacts || {};
    try {
      const [preview, mask, slices, slicesMask] = await Promise.all([
        loadImage(a["preview.png"]), loadImage(a["mask.png"]),
        a["slices.jpg"] ? loadImage(a["slices.jpg"]) : null, a["slices_mask.png"] ? loadImage(a["slices_mask.png"]) : null]);
      state.images = { preview, mask, slices, slicesMask };
    } catch (e) {
      $("study-error").textContent = `The result images cannot be shown: ${e.message}`;
      $("study-error").hidden = false;
      return;
    }
    const canvas = $("canvas");
    canvas.width = state.images.preview.naturalWidth;
    canvas.height = state.images.preview.naturalHeight;
    const n = study.num_slices || 1;
    $("slice").max = String(n - 1);
    $("slice").value = String(study.slice_index || 0);
    $("slice").disabled = n < 2 || !state.images.slices;
    state.slice = study.slice_index || 0;
    $("review").hidden = false;
    draw();
    setupAnnotator(study);
    renderTable(study);
  }

  function draw() {
    const canvas = $("canvas");
    const ctx = canvas.getContext("2d");
    const study = state.study;
    const onKey = state.slice === (study.slice_index || 0);
    const { preview, mask, slices, slicesMask } = state.images;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const opacity = $("mask-toggle").checked ? Number($("mask-opacity").value) / 100 : 0;
    if (onKey || !slices) {
      ctx.drawImage(preview, 0, 0);
      if (opacity) {
        ctx.globalAlpha = opacity;
        ctx.drawImage(mask, 0, 0);
        ctx.globalAlpha = 1;
      }
    } else {
      const { columns, cell } = study.slices;
      const [ch, cw] = cell;
      const sx = (state.slice % columns) * cw;
      const sy = Math.floor(state.slice / columns) * ch;
      ctx.drawImage(slices, sx, sy, cw, ch, 0, 0, canvas.width, canvas.height);
      if (opacity && slicesMask) {
        ctx.globalAlpha = opacity;
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(slicesMask, sx, sy, cw, ch, 0, 0, canvas.width, canvas.height);
        ctx.imageSmoothingEnabled = true;
        ctx.globalAlpha = 1;
      }
    }
    $("slice-text").textContent = `${state.slice + 1} / ${study.num_slices || 1}${onKey ? " (key slice)" : ""}`;
    $("offkey-note").hidden = onKey;
    $("viewer").classList.toggle("offkey", !onKey);
  }

  // ------------------------------------------------------------------ boxes (Annotorious)
  const labelOf = (a) => ((a.bodies || []).find((b) => b.purpose === "tagging") || {}).value || "L4-L5";

  function toAnnotation(disc, i) {
    const [x1, y1, x2, y2] = disc.box;
    const id = `disc-${i}-${Math.random().toString(36).slice(2, 8)}`;
    return {
      id,
      bodies: [{ id: `${id}-label`, annotation: id, purpose: "tagging", value: disc.herniated ? `${disc.level}_LDH` : disc.level }],
      target: { annotation: id, selector: { type: "RECTANGLE", geometry: { x: x1, y: y1, w: x2 - x1, h: y2 - y1, bounds: { minX: x1, minY: y1, maxX: x2, maxY: y2 } } } },
    };
  }

  function toDisc(a) {
    const g = a.target.selector.geometry;
    const label = labelOf(a);
    const round = (v) => Math.round(v * 10) / 10;
    return { box: [round(g.x), round(g.y), round(g.x + g.w), round(g.y + g.h)], level: label.replace("_LDH", ""), herniated: label.endsWith("_LDH") };
  }

  function snapshot() {
    return JSON.stringify(state.anno.getAnnotations());
  }

  function recordChange() {
    // called after every change (by our code and by Annotorious' events, so sometimes twice):
    // remember the state before it for Undo, once
    const now = snapshot();
    if (now !== state.last) {
      state.undo.push(state.last);
      state.last = now;
    }
    $("undo").disabled = state.undo.length === 0;
    renderLabels();
    renderBoxButtons();
  }

  function setupAnnotator(study) {
    if (state.anno) state.anno.destroy();
    const canvas = $("canvas");
    const anno = Annotorious.createImageAnnotator(canvas, { drawingEnabled: false, drawingMode: "drag" });
    state.anno = anno;
    anno.setStyle((a) => {
      const ldh = labelOf(a).endsWith("_LDH");
      return { stroke: ldh ? "#ff3b30" : "#3fb6ff", strokeWidth: ldh ? 3 : 2, fill: ldh ? "#ff3b30" : "#3fb6ff", fillOpacity: 0.08 };
    });
    const discs = study.reviewed_discs || (study.discs || []).filter((d) => LEVELS.includes(d.level));
    anno.setAnnotations(discs.map(toAnnotation));
    state.undo = [];
    state.last = snapshot();
    $("undo").disabled = true;
    anno.on("createAnnotation", (a) => {
      anno.setDrawingEnabled(false);
      $("add-box").setAttribute("aria-pressed", "false");
      const used = anno.getAnnotations().filter((x) => x.id !== a.id).map((x) => labelOf(x).replace("_LDH", ""));
      const level = LEVELS.find((l) => !used.includes(l)) || "L4-L5";
      anno.updateAnnotation({ ...a, bodies: [{ id: `${a.id}-label`, annotation: a.id, purpose: "tagging", value: level }] });
      recordChange();
      anno.setSelected(a.id);
      showEditor(anno.getAnnotationById(a.id));
    });
    anno.on("updateAnnotation", () => recordChange());
    anno.on("deleteAnnotation", () => recordChange());
    anno.on("selectionChanged", (sel) => showEditor(sel && sel[0]));
    showEditor(null);
    renderLabels();
    renderBoxButtons();
  }

  function showEditor(a) {
    const editor = $("box-editor");
    editor.hidden = !a;
    editor.dataset.id = a ? a.id : "";
    if (a) $("box-label").value = labelOf(a);
    document.querySelectorAll("#box-buttons button").forEach((b) => b.setAttribute("aria-pressed", String(!!a && b.dataset.id === a.id)));
  }

  function renderBoxButtons() {
    // keyboard users pick a box here, then move/resize it with the arrow keys
    const group = $("box-buttons");
    group.textContent = "";
    const selected = $("box-editor").dataset.id;
    for (const a of state.anno.getAnnotations()) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.id = a.id;
      b.textContent = labelOf(a);
      if (labelOf(a).endsWith("_LDH")) b.className = "ldh";
      b.setAttribute("aria-pressed", String(a.id === selected));
      b.addEventListener("click", () => {
        state.anno.setSelected(a.id);
        showEditor(state.anno.getAnnotationById(a.id));
      });
      group.append(b);
    }
  }

  function nudge(e) {
    const id = $("box-editor").dataset.id;
    const a = id && state.anno && state.anno.getAnnotationById(id);
    const keys = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (!a || !keys[e.key] || ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
    e.preventDefault();
    const step = e.shiftKey ? 5 : 1;
    const [dx, dy] = keys[e.key].map((v) => v * step);
    const g = { ...a.target.selector.geometry };
    const canvas = $("canvas");
    if (e.altKey) {
      g.w = Math.max(2, Math.min(canvas.width - g.x, g.w + dx));
      g.h = Math.max(2, Math.min(canvas.height - g.y, g.h + dy));
    } else {
      g.x = Math.max(0, Math.min(canvas.width - g.w, g.x + dx));
      g.y = Math.max(0, Math.min(canvas.height - g.h, g.y + dy));
    }
    g.bounds = { minX: g.x, minY: g.y, maxX: g.x + g.w, maxY: g.y + g.h };
    state.anno.updateAnnotation({ ...a, target: { ...a.target, selector: { ...a.target.selector, geometry: g } } });
    recordChange();
  }

  function renderLabels() {
    const layer = $("labels");
    layer.textContent = "";
    if (!state.anno) return;
    const canvas = $("canvas");
    const scale = canvas.clientWidth / canvas.width;
    for (const a of state.anno.getAnnotations()) {
      const g = a.target.selector.geometry;
      const label = labelOf(a);
      const tag = document.createElement("span");
      tag.className = `box-label${label.endsWith("_LDH") ? " ldh" : ""}`;
      const disc = (state.study.discs || []).find((d) => d.level === label.replace("_LDH", ""));
      tag.textContent = label + (disc ? ` ${disc.probability.toFixed(2)}` : "");
      tag.style.left = `${(g.x + g.w) * scale + 4}px`;
      tag.style.top = `${g.y * scale}px`;
      layer.append(tag);
    }
  }

  function renderTable(study) {
    const body = $("results-body");
    body.textContent = "";
    for (const d of study.discs || []) {
      const tr = document.createElement("tr");
      if (d.herniated) tr.className = "ldh";
      for (const text of [d.level, d.probability.toFixed(3), d.herniated ? "yes" : "no"]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
  }

  function setupEditing() {
    const select = $("box-label");
    for (const c of CLASSES) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = c.replace("_LDH", " — herniated (LDH)");
      select.append(o);
    }
    select.addEventListener("change", () => {
      const a = state.anno.getAnnotationById($("box-editor").dataset.id);
      if (!a) return;
      state.anno.updateAnnotation({ ...a, bodies: [{ id: `${a.id}-label`, annotation: a.id, purpose: "tagging", value: select.value }] });
      recordChange();
    });
    $("delete-box").addEventListener("click", () => {
      const id = $("box-editor").dataset.id;
      if (id && state.anno.getAnnotationById(id)) {
        state.anno.removeAnnotation(id);
        recordChange();
      }
      showEditor(null);
    });
    $("add-box").addEventListener("click", () => {
      const on = !state.anno.isDrawingEnabled();
      state.anno.setDrawingEnabled(on);
      $("add-box").setAttribute("aria-pressed", String(on));
    });
    $("undo").addEventListener("click", undo);
    // Capture phase on window: Annotorious has its own Ctrl+Z, which would undo a second time.
    window.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "z" && !$("review").hidden) {
        e.preventDefault();
        e.stopImmediatePropagation();
        undo();
      } else if (!$("review").hidden) {
        nudge(e);
      }
    }, true);
    $("save").addEventListener("click", () => saveFeedback("corrections"));
    $("accept").addEventListener("click", () => saveFeedback("accept"));
    $("mask-toggle").addEventListener("change", draw);
    $("mask-opacity").addEventListener("input", draw);
    $("slice").addEventListener("input", () => {
      state.slice = Number($("slice").value);
      draw();
    });
    window.addEventListener("resize", renderLabels);
  }

  function undo() {
    if (!state.undo.length) return;
    const previous = state.undo.pop();
    state.anno.setAnnotations(JSON.parse(previous));
    state.last = previous;
    $("undo").disabled = state.undo.length === 0;
    showEditor(null);
    renderLabels();
    renderBoxButtons();
  }

  async function saveFeedback(kind) {
    const id = state.study.study_id;
    const out = $("saved");
    out.className = "saved";
    out.textContent = "Saving…";
    try {
      const body = kind === "accept" ? {} : { discs: state.anno.getAnnotations().map(toDisc) };
      const saved = await api("POST", `/studies/${id}/${kind}`, body);
      out.textContent = `${kind === "accept" ? "Model predictions accepted" : "Corrections saved"}: ${saved.discs.length} boxes stored as ${saved.s3_key}.`;
      const study = await api("GET", `/studies/${id}`);
      state.study = study;
      setSteps(study.status);
      refreshList();
    } catch (e) {
      out.className = "saved error";
      out.textContent = `Not saved: ${e.code}: ${e.message}`;
    }
  }

  // ------------------------------------------------------------------------------ router
  function route() {
    const m = location.hash.match(/^#\/studies\/([0-9a-f]{32})$/);
    if (m) openStudy(m[1]);
    else {
      clearInterval(state.polling);
      show("home");
    }
  }

  async function init() {
    if (!CONFIG.apiUrl) {
      $("upload-error").textContent = "config.js does not say where the API is.";
      $("upload-error").hidden = false;
      return;
    }
    setupUpload();
    setupEditing();
    $("refresh-list").addEventListener("click", () => refreshList());
    $("more-studies").addEventListener("click", () => refreshList(true));
    window.addEventListener("hashchange", route);
    api("GET", "/models/current").then((m) => ($("model-version").textContent = `model ${m.model_version}`)).catch(() => {});
    refreshList();
    route();
  }

  window.DiscScopeApp = { prepareUpload, state };
  init();
})();
