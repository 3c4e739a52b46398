import { describe, expect, it } from 'vitest';
import { oldestKey } from '../../shared/oldest-key.ts';

/** A small deterministic PRNG, so a failure replays. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s / 2 ** 32;
  };
}

describe('oldestKey (pure)', () => {
  it('evicts exactly what keys().next() would, through inserts, touches, deletes anywhere, clears and table rebuilds', () => {
    const random = prng(20261203);
    const max = 300;
    const ours = new Map<number, number>();
    const reference = new Map<number, number>();
    const evicted: number[] = [];
    const expected: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const r = random();
      const key = Math.floor(random() * 2_000);
      for (const [m, out, oldest] of [
        [ours, evicted, () => oldestKey(ours)],
        [reference, expected, () => reference.keys().next().value],
      ] as const) {
        if (r < 0.6) {
          m.delete(key); // an insert or a touch: the key moves to the end
          m.set(key, i);
        } else if (r < 0.8) m.delete(key); // a delete anywhere (expiry)
        else if (r > 0.9999) m.clear();
        while (m.size > max) {
          const k = oldest()!;
          m.delete(k);
          out.push(k);
        }
      }
    }
    expect(evicted.length).toBeGreaterThan(5_000);
    expect(evicted).toEqual(expected);
    expect([...ours]).toEqual([...reference]);
  });

  it('works on a Set, and on a collection emptied and filled again', () => {
    const s = new Set(['a', 'b', 'c']);
    expect(oldestKey(s)).toBe('a');
    s.delete('a');
    s.add('a');
    expect(oldestKey(s)).toBe('b');
    s.delete('b');
    s.delete('c');
    expect(oldestKey(s)).toBe('a');
    s.delete('a');
    expect(oldestKey(s)).toBeUndefined();
    s.add('d');
    expect(oldestKey(s)).toBe('d');
  });
});
