// The worklist: studies to read, unreviewed first, in the order and with the filters the reader
// chose; the open study is marked; next/previous follow the list.

/**
 * @typedef {{study_id: string, status: string, filename?: string, created_at?: string, error_code?: string,
 *   needs_review?: boolean, max_probability?: number | null, herniated?: boolean, reviewed_by?: string,
 *   reviewed_at?: string}} ListedStudy
 */

/**
 * The study `step` places away from `id` in the list; from a study not (or no longer) in the list,
 * the first unreviewed one.
 * @param {ListedStudy[]} studies
 * @param {string | null} id
 * @param {number} step
 * @returns {string | null}
 */
export function neighbour(studies, id, step) {
  const at = studies.findIndex((s) => s.study_id === id);
  if (at >= 0) {
    const next = studies[at + step];
    return next ? next.study_id : null;
  }
  const first = studies.find((s) => s.status !== "REVIEWED" && s.study_id !== id);
  return first ? first.study_id : null;
}

const STATUS_TEXT = { UPLOADED: "uploaded", PROCESSING: "processing", SUCCEEDED: "to review", FAILED: "failed", REVIEWED: "reviewed" };

/** @param {string | undefined} iso */
export function shortTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export class Worklist {
  /**
   * @param {{list: HTMLElement, more: HTMLButtonElement, filters: HTMLFormElement, count: HTMLElement,
   *   reviewer: HTMLSelectElement, refresh: HTMLButtonElement, who: HTMLElement}} els
   * @param {(params: object) => Promise<any>} load the API's listStudies
   */
  constructor(els, load) {
    this.els = els;
    this.load = load;
    /** @type {ListedStudy[]} */ this.studies = [];
    this.cursor = null;
    /** @type {string | null} */ this.current = null;
    this.requests = 0;
    els.filters.addEventListener("change", () => this.refresh());
    els.filters.addEventListener("submit", (e) => e.preventDefault());
    els.refresh.addEventListener("click", () => this.refresh());
    els.more.addEventListener("click", () => this.refresh(true));
  }

  params() {
    const form = new FormData(this.els.filters);
    return Object.fromEntries([...form.entries()].filter(([, v]) => v !== ""));
  }

  /** Reloads the list (or the next page of it). */
  async refresh(append = false) {
    const request = ++this.requests; // answers can arrive out of order: only the latest is shown
    try {
      const page = await this.load({ ...this.params(), limit: 25, ...(append && this.cursor ? { cursor: this.cursor } : {}) });
      if (request !== this.requests) return;
      this.studies = append ? this.studies.concat(page.studies) : page.studies;
      this.cursor = page.next_cursor;
      this.render(page.total);
      this.setReviewers(page.reviewers || []);
      if (page.caller) this.els.who.textContent = `Reviewer: ${page.caller.id}`;
    } catch (e) {
      this.els.list.textContent = `Cannot load studies: ${/** @type {Error} */ (e).message}`;
    }
  }

  /** @param {string[]} reviewers */
  setReviewers(reviewers) {
    const select = this.els.reviewer;
    const chosen = select.value;
    const known = new Set([...select.options].map((o) => o.value));
    for (const r of reviewers) {
      if (!known.has(r)) select.append(new Option(r, r));
    }
    select.value = chosen;
  }

  /** @param {number} [total] */
  render(total) {
    const list = this.els.list;
    list.textContent = "";
    for (const s of this.studies) {
      const li = document.createElement("li");
      li.dataset.id = s.study_id;
      li.className = `status-${s.status.toLowerCase()}`;
      const a = document.createElement("a");
      a.href = `#/studies/${s.study_id}`;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.filename || s.study_id;
      const meta = document.createElement("span");
      meta.className = "meta";
      const probability = typeof s.max_probability === "number" ? ` · P(LDH) ${s.max_probability.toFixed(2)}` : "";
      const who = s.reviewed_by ? ` · ${s.reviewed_by}` : "";
      meta.textContent = `${shortTime(s.created_at)}${probability}${who}`;
      a.append(name, meta);
      const badges = document.createElement("span");
      badges.className = "badges";
      if (s.needs_review) badges.append(badge("flag", "flagged", "The model asks for a careful review"));
      if (s.herniated) badges.append(badge("ldh", "LDH", "A disc is called herniated"));
      badges.append(badge(s.status.toLowerCase(), STATUS_TEXT[/** @type {keyof STATUS_TEXT} */ (s.status)] || s.status, s.error_code || ""));
      li.append(a, badges);
      list.append(li);
    }
    if (!this.studies.length) list.textContent = "No studies match.";
    this.els.more.hidden = !this.cursor;
    if (total !== undefined) this.els.count.textContent = `${total}`;
    this.mark(this.current);
  }

  /** Marks the open study in the list. @param {string | null} id */
  mark(id) {
    this.current = id;
    for (const li of /** @type {NodeListOf<HTMLElement>} */ (this.els.list.querySelectorAll("li"))) {
      const open = li.dataset.id === id;
      li.classList.toggle("open", open);
      const a = li.querySelector("a");
      if (a) {
        if (open) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      }
    }
  }

  /** @param {number} step */
  neighbour(step) {
    return neighbour(this.studies, this.current, step);
  }
}

/** @param {string} kind @param {string} text @param {string} title */
function badge(kind, text, title) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  if (title) span.title = title;
  return span;
}
