// Hash routes: #/ (home) and #/studies/{id}. A route change can be held back (unsaved edits).

/** @param {string} hash @returns {{view: "home"} | {view: "study", id: string}} */
export function parseRoute(hash) {
  const m = hash.match(/^#\/studies\/([0-9a-f]{32})$/);
  return m ? { view: "study", id: m[1] } : { view: "home" };
}

/** @param {string} id */
export const studyHash = (id) => `#/studies/${id}`;

/**
 * Calls `onRoute` for the current hash and every change; `mayLeave()` returning false puts the old
 * hash back (the user chose to stay).
 * @param {(route: ReturnType<typeof parseRoute>) => void} onRoute
 * @param {() => boolean} mayLeave
 */
export function startRouter(onRoute, mayLeave) {
  let current = location.hash;
  window.addEventListener("hashchange", () => {
    if (location.hash === current) return;
    if (!mayLeave()) {
      history.replaceState(null, "", current || "#/");
      return;
    }
    current = location.hash;
    onRoute(parseRoute(current));
  });
  onRoute(parseRoute(current));
  return {
    /** @param {string} hash */
    go(hash) { if (hash !== location.hash) location.hash = hash; },
  };
}
