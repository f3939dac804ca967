import assert from "node:assert/strict";
import { test } from "node:test";

import { listQuery } from "../../web/js/api.js";
import { SHORTCUTS, shortcutFor } from "../../web/js/keyboard.js";
import { parseRoute, studyHash } from "../../web/js/router.js";
import { FULL, applyWindow, dragWindow, lut } from "../../web/js/windowing.js";
import { neighbour } from "../../web/js/worklist.js";

const ID = "0123456789abcdef0123456789abcdef";

test("routes", () => {
  assert.deepEqual(parseRoute(studyHash(ID)), { view: "study", id: ID });
  assert.deepEqual(parseRoute("#/studies/../../etc"), { view: "home" });
  assert.deepEqual(parseRoute(""), { view: "home" });
});

test("the worklist query leaves empty filters out", () => {
  assert.equal(listQuery({ sort: "probability", status: "", reviewer: undefined, limit: 25 }), "sort=probability&limit=25");
});

test("next and previous follow the list; off the list, the first unreviewed study", () => {
  const list = [{ study_id: "a", status: "SUCCEEDED" }, { study_id: "b", status: "SUCCEEDED" }, { study_id: "c", status: "REVIEWED" }];
  assert.equal(neighbour(list, "a", 1), "b");
  assert.equal(neighbour(list, "a", -1), null);
  assert.equal(neighbour(list, "c", -1), "b");
  assert.equal(neighbour(list, "gone", 1), "a");
});

test("window/level: the full range changes nothing, a narrow window stretches contrast", () => {
  const pixels = new Uint8ClampedArray([0, 0, 0, 255, 100, 100, 100, 255, 200, 200, 200, 255]);
  assert.deepEqual([...applyWindow(new Uint8ClampedArray(pixels), FULL)], [...pixels]);
  const table = lut({ width: 100, center: 100 });
  assert.deepEqual([table[0], table[50], table[100], table[150], table[255]], [0, 0, 128, 255, 255]);
  assert.deepEqual(dragWindow(FULL, -300, 400), { width: 2, center: 255 }); // clamped
});

test("every shortcut has its own keys, and keys map to the intended commands", () => {
  const keys = SHORTCUTS.map((s) => `${s.command}:${s.keys}`);
  assert.equal(new Set(keys).size, keys.length);
  const cases = [
    [{ key: "n" }, "addBox"], [{ key: "Delete" }, "deleteBox"], [{ key: "Escape" }, "escape"], [{ key: "?" , shiftKey: true }, "help"],
    [{ key: "z", ctrlKey: true }, "undo"], [{ key: "Z", ctrlKey: true, shiftKey: true }, "redo"], [{ key: "y", ctrlKey: true }, "redo"],
    [{ key: "s", ctrlKey: true }, "save"], [{ key: "S", ctrlKey: true, shiftKey: true }, "saveNext"],
    [{ key: "a" }, "accept"], [{ key: "A", shiftKey: true }, "acceptNext"], [{ key: "j" }, "nextStudy"], [{ key: "k" }, "previousStudy"],
    [{ key: "]" }, "nextDisc"], [{ key: "[" }, "previousDisc"], [{ key: "5" }, "renumber"], [{ key: "ArrowLeft", altKey: true }, "resizeBox"],
    [{ key: "!", code: "Digit1", shiftKey: true }, "preset"], [{ key: "f" }, "fit"],
  ];
  for (const [event, command] of cases) assert.equal(shortcutFor(event)?.command, command, JSON.stringify(event));
  assert.equal(shortcutFor({ key: "5" }).arg, "L5-S1");
  assert.equal(shortcutFor({ key: "0" }).arg, "T12-L1");
  assert.equal(shortcutFor({ key: "x" }), null);
});
