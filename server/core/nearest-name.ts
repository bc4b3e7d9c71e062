/** The known name a mistyped one is closest to (underscores aside, at most 3 edits), if any. */
export function nearestName(name: string, names: readonly string[]): string | undefined {
  const bare = (s: string): string => s.replaceAll('_', '');
  let best: { name: string; d: number } | undefined;
  for (const n of names) {
    const d = editDistance(bare(name), bare(n));
    if (d <= 3 && (!best || d < best.d)) best = { name: n, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}
