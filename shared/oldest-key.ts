/**
 * The oldest key of a Map or Set (insertion order), for the bounded caches that evict it: job
 * store, timelines, idempotency keys, rate-limit buckets, seen ids.
 *
 * `m.keys().next()` is not O(1). V8 keeps a deleted entry as a hole in the insertion-ordered table
 * until the table is rebuilt, and iteration skips holes one by one; a cache that deletes its oldest
 * key (and moves touched keys to the end) puts all of them at the front, so every eviction walks
 * them again. At 20,000 entries that was ~9 µs per eviction, 4.9 % of the enqueuer's samples in
 * accept-stopped (docs/adr/1101-bounded-maps-evict-in-o1.md). Here one live iterator per collection
 * resumes where the previous eviction stopped: the language keeps a live iterator correct across
 * deletes, inserts and table rebuilds, and everything it has passed was deleted or moved to the end,
 * where it will meet it again.
 *
 * Contract: the caller deletes the key it is given before asking again (every caller evicts it at
 * once). A key it kept would be skipped until the iterator has gone round.
 */
const cursors = new WeakMap<object, Iterator<unknown>>();

export function oldestKey<K>(m: Map<K, unknown> | Set<K>): K | undefined {
  let it = cursors.get(m) as Iterator<K> | undefined;
  let r = it?.next();
  if (!r || r.done) {
    it = m.keys();
    cursors.set(m, it);
    r = it.next();
  }
  return r.done ? undefined : r.value;
}
