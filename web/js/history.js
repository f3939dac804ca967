// Undo and redo over whole states (the box list), one entry per finished action.

/** @template T */
export class History {
  /** @param {T} initial @param {number} [limit] how many steps back are kept */
  constructor(initial, limit = 200) {
    /** @type {string[]} */ this.past = [];
    /** @type {string[]} */ this.future = [];
    this.current = JSON.stringify(initial);
    this.saved = this.current;
    this.limit = limit;
  }

  /** Records a new state; nothing happens when it equals the current one. @param {T} state */
  push(state) {
    const next = JSON.stringify(state);
    if (next === this.current) return false;
    this.past.push(this.current);
    if (this.past.length > this.limit) this.past.shift();
    this.future = [];
    this.current = next;
    return true;
  }

  /** @returns {T | null} the state before, or null when there is none */
  undo() {
    if (!this.past.length) return null;
    this.future.push(this.current);
    this.current = /** @type {string} */ (this.past.pop());
    return JSON.parse(this.current);
  }

  /** @returns {T | null} */
  redo() {
    if (!this.future.length) return null;
    this.past.push(this.current);
    this.current = /** @type {string} */ (this.future.pop());
    return JSON.parse(this.current);
  }

  get canUndo() { return this.past.length > 0; }
  get canRedo() { return this.future.length > 0; }

  /** The current state is what the server holds now (after a save or a load). */
  markSaved() { this.saved = this.current; }
  /** Whether there are edits the server does not have. */
  get dirty() { return this.current !== this.saved; }
}
