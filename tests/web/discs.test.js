import assert from "node:assert/strict";
import { test } from "node:test";

import {
  LABELS, boxesFromStudy, duplicateLevels, guessLevel, labelOf, parseLabel, placeBox, provenance, renumber, toPayload, topDown,
} from "../../web/js/discs.js";

let n = 0;
const id = () => `b${++n}`;
/** five discs from the top (L1-L2) down, as the model names them */
const MODEL = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"].map((level, i) => ({
  level, box: [50, 20 + 30 * i, 90, 30 + 30 * i], probability: 0.1 * (i + 1), herniated: i === 3,
}));

test("labels carry the level and the LDH flag, and parse back", () => {
  assert.equal(LABELS.length, 12);
  assert.equal(labelOf({ level: "L4-L5", herniated: true }), "L4-L5_LDH");
  assert.deepEqual(parseLabel("T12-L1_LDH"), { level: "T12-L1", herniated: true });
  assert.deepEqual(parseLabel("L1-L2"), { level: "L1-L2", herniated: false });
});

test("a study's boxes are its latest review, else the model's discs, each knowing its model disc", () => {
  const fresh = boxesFromStudy({ discs: MODEL }, id);
  assert.deepEqual(fresh.map((b) => b.modelDisc), [0, 1, 2, 3, 4]);
  const reviewed = boxesFromStudy({ discs: MODEL, reviewed_discs: [
    { level: "L3-L4", box: [50, 20, 90, 30], herniated: false, model_disc: 0 },
    { level: "L5-S1", box: [10, 10, 20, 20], herniated: true },   // drawn before origins were recorded: no match
    { level: "L2-L3", box: [51, 50, 90, 60], herniated: false },  // before origins: matched by overlap
    { level: "L4-L5", box: [1, 1, 5, 5], herniated: false, model_disc: null },
  ] }, id);
  assert.deepEqual(reviewed.map((b) => b.modelDisc), [0, null, 1, null]);
});

test("the payload splits training levels from T12-L1 and keeps each box's origin", () => {
  const boxes = [
    { id: "a", level: "L5-S1", box: [1.04, 2, 3, 4], herniated: true, modelDisc: 4 },
    { id: "b", level: "T12-L1", box: [1, 2, 3, 4], herniated: false, modelDisc: null },
  ];
  assert.deepEqual(toPayload(boxes), {
    discs: [{ box: [1, 2, 3, 4], level: "L5-S1", herniated: true, model_disc: 4 }],
    other_discs: [{ box: [1, 2, 3, 4], level: "T12-L1", herniated: false }],
  });
});

test("a probability belongs to the model's disc, and an edited or drawn box says so", () => {
  const [top] = boxesFromStudy({ discs: MODEL }, id);
  assert.deepEqual(provenance(top, MODEL), { kind: "model", probability: 0.1, changes: [] });
  const renamed = provenance({ ...top, level: "L3-L4", box: [52, 20, 92, 30] }, MODEL);
  assert.equal(renamed.kind, "edited");
  assert.equal(renamed.probability, 0.1); // not L3-L4's 0.3
  assert.deepEqual(renamed.changes, ["moved", "was L1-L2"]);
  assert.deepEqual(provenance({ ...top, box: [50, 20, 99, 30], herniated: true }, MODEL).changes, ["resized", "marked LDH"]);
  assert.deepEqual(provenance({ ...top, modelDisc: null }, MODEL), { kind: "new", probability: null, changes: [] });
});

test("two boxes with one level are found", () => {
  const boxes = boxesFromStudy({ discs: MODEL }, id);
  assert.deepEqual(duplicateLevels(boxes), []);
  boxes[0].level = "L2-L3";
  assert.deepEqual(duplicateLevels(boxes), ["L2-L3"]);
});

test("'this disc is L5-S1' renames every box by its place along the spine", () => {
  const shifted = boxesFromStudy({ discs: MODEL.map((d, i) => ({ ...d, level: ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5"][i] })) }, id);
  const lowest = topDown(shifted).at(-1);
  const { boxes, outside } = renumber(shifted, lowest.id, "L5-S1");
  assert.deepEqual(topDown(boxes).map((b) => b.level), ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]);
  assert.deepEqual(outside, []);
  assert.deepEqual(boxes.map((b) => b.herniated), shifted.map((b) => b.herniated)); // LDH stays with its disc
  const again = renumber(shifted, topDown(shifted)[1].id, "T12-L1"); // the top box would be above T12-L1
  assert.equal(again.outside.length, 1);
  assert.equal(again.outside[0].level, "T12-L1"); // it keeps its name
});

test("a drawn box is named from its neighbours, else the first free level from the bottom", () => {
  const boxes = boxesFromStudy({ discs: MODEL.filter((d) => d.level !== "L3-L4") }, id);
  assert.equal(guessLevel(boxes, [50, 80, 90, 90]), "L3-L4");
  assert.equal(guessLevel([], [0, 0, 5, 5]), "L5-S1");
  assert.equal(guessLevel(boxesFromStudy({ discs: MODEL }, id), [50, 0, 90, 8]), "T12-L1");
});

test("a box placed from the keyboard goes one disc spacing below the lowest, inside the image", () => {
  const boxes = boxesFromStudy({ discs: MODEL }, id);
  assert.deepEqual(placeBox(boxes, { width: 200, height: 200 }), [50, 170, 90, 180]);
  assert.deepEqual(placeBox(boxes, { width: 200, height: 170 }), [50, 0, 90, 10]); // no room below: above the top
  assert.deepEqual(placeBox([], { width: 200, height: 140 }), [80, 65, 120, 75]);
});
