import assert from "node:assert/strict";
import { test } from "node:test";

import { History } from "../../web/js/history.js";

test("undo and redo walk the states; a new edit drops the redo branch", () => {
  const h = new History([1]);
  assert.equal(h.push([1]), false); // no change, no step
  h.push([1, 2]);
  h.push([1, 2, 3]);
  assert.deepEqual(h.undo(), [1, 2]);
  assert.deepEqual(h.undo(), [1]);
  assert.equal(h.undo(), null);
  assert.deepEqual(h.redo(), [1, 2]);
  h.push([9]);
  assert.equal(h.canRedo, false);
  assert.deepEqual(h.undo(), [1, 2]);
});

test("dirty means edits the server does not have", () => {
  const h = new History(["model"]);
  assert.equal(h.dirty, false);
  h.push(["edited"]);
  assert.equal(h.dirty, true);
  h.markSaved();
  assert.equal(h.dirty, false);
  h.undo();
  assert.equal(h.dirty, true); // back to the model's answer is a change from what was saved
});

test("only the last `limit` steps are kept", () => {
  const h = new History(0, 3);
  for (let i = 1; i <= 10; i++) h.push(i);
  let steps = 0;
  while (h.undo() !== null) steps++;
  assert.equal(steps, 3);
});
