'use strict';
// One request's events as an async iterator. Events are pulled: the addon's reader thread
// waits for the next event only after next() asks, so a consumer that stops reading leaves
// the request paused in the C library (and, past slowConsumerTimeoutMs, ended with
// LORADOCK_STATUS_SLOW_CONSUMER).
const native = require('./native');
const { LoradockError, Status } = require('./errors');

// Generations waiting for a batch. The addon calls back through a weak reference (so an
// abandoned, never-read generation can be collected, which cancels its request); while a
// batch is awaited, this set keeps the generation and its awaiting consumer alive.
const awaiting = new Set();

/**
 * The addon's callback for a generation, holding it weakly. A function of its own: a
 * closure made inside the constructor would share a context that captures `this`.
 */
function batchCallback(ref) {
  return (batch) => ref.deref()?._onBatch(batch);
}

/**
 * An async iterator over a request's events: `{type: 'token', text}` events, then one
 * `{type: 'done', finishReason, usage}`. A failed request throws a {@link LoradockError}
 * (e.g. code `LORADOCK_STATUS_ADAPTER`) instead of the done event. Aborting the signal (or
 * calling cancel()) ends the request: the iterator yields the tokens already produced, then
 * a done event with `finishReason: 'cancelled'` (it does not throw). Breaking out of a
 * `for await` loop cancels the request too.
 */
class Generation {
  #handle;
  #runtime; // keeps the runtime alive while its request runs
  #queue = []; // {value} | {error}
  #waiters = []; // {resolve, reject}
  #asked = false; // a batch is on its way
  #terminal = false; // the terminal event (or error) is queued
  #over = false; // the consumer saw the end, or closed
  #signal = null;
  #onAbort = null;

  /** @internal use Runtime#generate */
  constructor(runtime, rtHandle, request, signal) {
    this.#runtime = runtime;
    this.#handle = native.generate(rtHandle, request, batchCallback(new WeakRef(this)));
    if (signal) {
      this.#signal = signal;
      this.#onAbort = () => this.cancel();
      if (signal.aborted) this.cancel();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Ask the request to end; the iterator ends with a done event, finishReason 'cancelled'. */
  cancel() {
    if (!this.#terminal) native.streamCancel(this.#handle);
  }

  /** @internal called by the addon with a batch of events. */
  _onBatch(batch) {
    awaiting.delete(this);
    this.#asked = false;
    for (const ev of batch) {
      if (ev.type === 'error') {
        this.#queue.push({ error: ev.error });
        this.#terminal = true;
      } else {
        this.#queue.push({ value: ev });
        if (ev.type === 'done') this.#terminal = true;
      }
    }
    if (this.#terminal) this.#detachSignal();
    this.#pump();
  }

  #detachSignal() {
    if (this.#signal) this.#signal.removeEventListener('abort', this.#onAbort);
    this.#signal = null;
  }

  #pump() {
    while (this.#waiters.length && this.#queue.length) {
      const w = this.#waiters.shift();
      const item = this.#queue.shift();
      if (item.error) {
        this.#over = true;
        w.reject(item.error);
      } else {
        if (item.value.type === 'done') this.#over = true;
        w.resolve({ value: item.value, done: false });
      }
    }
    if (!this.#waiters.length) return;
    if (this.#over || (this.#terminal && !this.#queue.length)) {
      this.#over = true;
      for (const w of this.#waiters.splice(0)) w.resolve({ value: undefined, done: true });
      return;
    }
    if (this.#asked) return;
    this.#asked = true;
    awaiting.add(this);
    if (!native.streamNext(this.#handle)) {
      // The reader thread ended without a terminal event (it cannot, unless closed).
      awaiting.delete(this);
      this.#asked = false;
      this.#terminal = true;
      this.#queue.push({
        error: new LoradockError('LORADOCK_STATUS_STREAM_ENDED', 'the stream ended', Status.STREAM_ENDED),
      });
      this.#pump();
    }
  }

  /** @returns {Promise<IteratorResult<object>>} the next event */
  next() {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#pump();
    });
  }

  /** Stop early (a `break` in `for await` calls this): cancels the request and frees it. */
  async return(value) {
    this.#over = true;
    this.#terminal = true;
    this.#queue.length = 0;
    awaiting.delete(this);
    this.#detachSignal();
    native.streamClose(this.#handle);
    for (const w of this.#waiters.splice(0)) w.resolve({ value: undefined, done: true });
    return { value, done: true };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

module.exports = { Generation };
