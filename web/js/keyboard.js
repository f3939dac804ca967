// Keyboard shortcuts: one table, used both to dispatch keys and to list them in the "?" overlay.

/**
 * @typedef {{key: string, code?: string, ctrlKey?: boolean, metaKey?: boolean, shiftKey?: boolean, altKey?: boolean}} KeyLike
 * @typedef {{command: string, keys: string, help: string, match: (e: KeyLike) => boolean, arg?: any}} Shortcut
 */

const ctrl = (/** @type {KeyLike} */ e) => !!(e.ctrlKey || e.metaKey);
const plain = (/** @type {KeyLike} */ e) => !ctrl(e) && !e.altKey;
const key = (/** @type {string} */ k) => (/** @type {KeyLike} */ e) => plain(e) && e.key.toLowerCase() === k && !e.shiftKey;

/** @type {Shortcut[]} */
export const SHORTCUTS = [
  { command: "help", keys: "?", help: "Show or hide this list", match: (e) => plain(e) && e.key === "?" },
  { command: "escape", keys: "Esc", help: "Cancel drawing, deselect the box, close this list", match: (e) => e.key === "Escape" },
  { command: "addBox", keys: "N", help: "New box: drag on the image, or press Enter to place it below the lowest box", match: key("n") },
  { command: "placeBox", keys: "Enter", help: "While drawing: place the new box without a mouse", match: (e) => plain(e) && e.key === "Enter" && !e.shiftKey },
  { command: "deleteBox", keys: "Delete / Backspace", help: "Delete the selected box", match: (e) => plain(e) && (e.key === "Delete" || e.key === "Backspace") },
  { command: "nextDisc", keys: "]", help: "Select the next disc down", match: (e) => plain(e) && e.key === "]" },
  { command: "previousDisc", keys: "[", help: "Select the next disc up", match: (e) => plain(e) && e.key === "[" },
  { command: "toggleLdh", keys: "H", help: "Herniated (LDH) or not, for the selected box", match: key("h") },
  ...["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"].map((level, i) => ({
    command: "renumber", arg: level, keys: String(i), help: `The selected disc is ${level}: rename all discs from it`,
    match: (/** @type {KeyLike} */ e) => plain(e) && !e.shiftKey && e.key === String(i),
  })),
  { command: "moveBox", keys: "Arrows (Shift: 5 px)", help: "Move the selected box", match: (e) => plain(e) && e.key.startsWith("Arrow") },
  { command: "resizeBox", keys: "Alt + Arrows", help: "Resize the selected box", match: (e) => !ctrl(e) && !!e.altKey && e.key.startsWith("Arrow") },
  { command: "undo", keys: "Ctrl+Z", help: "Undo", match: (e) => ctrl(e) && !e.shiftKey && e.key.toLowerCase() === "z" },
  { command: "redo", keys: "Ctrl+Shift+Z / Ctrl+Y", help: "Redo", match: (e) => ctrl(e) && ((e.shiftKey && e.key.toLowerCase() === "z") || e.key.toLowerCase() === "y") },
  { command: "save", keys: "Ctrl+S", help: "Save corrections", match: (e) => ctrl(e) && !e.shiftKey && e.key.toLowerCase() === "s" },
  { command: "saveNext", keys: "Ctrl+Shift+S", help: "Save corrections and open the next study", match: (e) => ctrl(e) && !!e.shiftKey && e.key.toLowerCase() === "s" },
  { command: "accept", keys: "A", help: "Accept the model's result", match: key("a") },
  { command: "acceptNext", keys: "Shift+A", help: "Accept the model's result and open the next study", match: (e) => plain(e) && !!e.shiftKey && e.key.toLowerCase() === "a" },
  { command: "nextStudy", keys: "J", help: "Next study in the worklist", match: key("j") },
  { command: "previousStudy", keys: "K", help: "Previous study in the worklist", match: key("k") },
  { command: "slice", arg: 1, keys: "PageDown / mouse wheel", help: "Next slice (wheel: scroll through slices)", match: (e) => plain(e) && e.key === "PageDown" },
  { command: "slice", arg: -1, keys: "PageUp", help: "Previous slice", match: (e) => plain(e) && e.key === "PageUp" },
  { command: "keySlice", keys: "Home", help: "Back to the key slice", match: (e) => plain(e) && e.key === "Home" },
  { command: "tool", arg: "edit", keys: "E", help: "Tool: edit boxes", match: key("e") },
  { command: "tool", arg: "wl", keys: "W", help: "Tool: window/level (drag; also right-drag in any tool)", match: key("w") },
  { command: "tool", arg: "pan", keys: "P", help: "Tool: pan (drag; also middle-drag in any tool)", match: key("p") },
  ...["full", "contrast", "bright", "dark"].map((preset, i) => ({
    command: "preset", arg: preset, keys: `Shift+${i + 1}`, help: `Window preset ${i + 1}`,
    match: (/** @type {KeyLike} */ e) => plain(e) && !!e.shiftKey && e.code === `Digit${i + 1}`,
  })),
  { command: "zoom", arg: 1.25, keys: "+ (Ctrl+wheel)", help: "Zoom in", match: (e) => plain(e) && (e.key === "+" || e.key === "=") },
  { command: "zoom", arg: 0.8, keys: "-", help: "Zoom out", match: (e) => plain(e) && e.key === "-" },
  { command: "fit", keys: "F", help: "Fit the image (reset zoom, pan and window)", match: key("f") },
  { command: "mask", keys: "M", help: "Show or hide the disc mask", match: key("m") },
];

/**
 * The shortcut a key press means, or null.
 * @param {KeyLike} e
 * @returns {Shortcut | null}
 */
export function shortcutFor(e) {
  return SHORTCUTS.find((s) => s.match(e)) || null;
}
