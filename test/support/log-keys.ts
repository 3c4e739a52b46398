/**
 * Keys written more than once in one object of a raw JSON line (`{"a":1,"a":2}`), at any depth.
 * JSON.parse keeps the last one silently; many log pipelines reject such lines.
 */
export function duplicateKeys(line: string): string[] {
  const dups: string[] = [];
  const stack: Array<Set<string> | null> = []; // a Set per open object, null per open array
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      const key = line.slice(i + 1, j);
      i = j + 1;
      let k = i;
      while (line[k] === ' ') k++;
      const top = stack.at(-1);
      if (line[k] === ':' && top) {
        if (top.has(key)) dups.push(key);
        top.add(key);
      }
      continue;
    }
    if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    i++;
  }
  return dups;
}
