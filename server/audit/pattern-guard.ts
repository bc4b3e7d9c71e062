/**
 * The most work one redaction pattern may do at one position of the text: the ways it can try to
 * match (each bounded repetition and alternation multiplies them) times the longest text one try
 * reads. With no unbounded repetition and no back-reference, redacting n characters costs at most
 * n × this, so a pattern within it runs in time linear in the text, whatever the text: about 50 ms
 * for 64 KB at the limit.
 */
export const MAX_PATTERN_WORK = 1024;

interface Cost {
  /** Ways the engine can try to match, an upper bound. */
  paths: number;
  /** The longest text one try reads. */
  length: number;
}

/** A cap that keeps products finite: anything above it is refused anyway. */
const CAP = Number.MAX_SAFE_INTEGER;
const mul = (a: number, b: number): number => Math.min(CAP, a * b);

class PatternError extends Error {}

/**
 * Why a regular expression could take more than linear time on text a member chooses, or null when
 * it cannot. Admins' patterns (AIBRIDGE_REDACT_PATTERNS) run over every prompt; a single `\d+x`
 * over a long run of digits is quadratic, `(a|a){0,30}` exponential. Refused: `*`, `+` and `{n,}`
 * (use `{0,64}`), back-references, and patterns whose work is above MAX_PATTERN_WORK.
 */
export function patternProblem(source: string): string | null {
  let i = 0;

  const sequence = (): Cost => {
    let alt: Cost = { paths: 0, length: 0 };
    let seq: Cost = { paths: 1, length: 0 };
    while (i < source.length && source[i] !== ')') {
      if (source[i] === '|') {
        i++;
        alt = { paths: Math.min(CAP, alt.paths + seq.paths), length: Math.max(alt.length, seq.length) };
        seq = { paths: 1, length: 0 };
        continue;
      }
      const atom = quantified(item());
      seq = { paths: mul(seq.paths, atom.paths), length: Math.min(CAP, seq.length + atom.length) };
    }
    return { paths: Math.min(CAP, alt.paths + seq.paths), length: Math.max(alt.length, seq.length) };
  };

  const item = (): Cost => {
    const c = source[i]!;
    if (c === '\\') return escaped();
    if (c === '[') {
      i++;
      if (source[i] === '^') i++;
      if (source[i] === ']') i++;
      while (i < source.length && source[i] !== ']') i += source[i] === '\\' ? 2 : 1;
      i++;
      return { paths: 1, length: 1 };
    }
    if (c === '(') {
      i++;
      let lookaround = false;
      if (source[i] === '?') {
        const rest = source.slice(i, i + 4);
        if (rest.startsWith('?:')) i += 2;
        else if (rest.startsWith('?=') || rest.startsWith('?!')) {
          i += 2;
          lookaround = true;
        } else if (rest.startsWith('?<=') || rest.startsWith('?<!')) {
          i += 3;
          lookaround = true;
        } else if (rest.startsWith('?<')) i = source.indexOf('>', i) + 1;
      }
      const inner = sequence();
      i++;
      // A lookaround reads text, but consumes none of it.
      return lookaround ? { paths: inner.paths, length: inner.length } : inner;
    }
    i++;
    if (c === '^' || c === '$') return { paths: 1, length: 0 };
    return { paths: 1, length: 1 };
  };

  const escaped = (): Cost => {
    const next = source[i + 1] ?? '';
    if (/[1-9]/.test(next) || next === 'k')
      throw new PatternError('back-references can take exponential time');
    i += 2;
    if ((next === 'u' || next === 'p' || next === 'P') && source[i] === '{') i = source.indexOf('}', i) + 1;
    if (next === 'b' || next === 'B') return { paths: 1, length: 0 };
    return { paths: 1, length: 1 };
  };

  const quantified = (atom: Cost): Cost => {
    const c = source[i];
    let min: number;
    let max: number;
    if (c === '*' || c === '+') throw new PatternError(`unbounded "${c}": give it a maximum, e.g. {1,32}`);
    if (c === '?') {
      i++;
      [min, max] = [0, 1];
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
      // Not a quantifier: a literal brace.
      if (!m) return atom;
      if (m[2] !== undefined && m[3] === '')
        throw new PatternError(`unbounded "${m[0]}": give it a maximum, e.g. {${m[1]},${Number(m[1]) + 32}}`);
      min = Number(m[1]);
      max = m[3] !== undefined ? Number(m[3]) : min;
      i += m[0].length;
    } else return atom;
    if (source[i] === '?') i++;
    // Each of the (max - min + 1) counts, each repetition choosing among the atom's own paths.
    return {
      paths: mul(max - min + 1, atom.paths ** max),
      length: mul(max, atom.length),
    };
  };

  try {
    const cost = sequence();
    if (i < source.length) return 'unbalanced parenthesis';
    const work = mul(cost.paths, Math.max(1, cost.length));
    if (work > MAX_PATTERN_WORK)
      return `may do ${work >= CAP ? 'unbounded' : work} steps at each position of a text (ways to match × longest match; limit ${MAX_PATTERN_WORK}): narrow its repetition ranges, e.g. {32} rather than {32,64}`;
    return null;
  } catch (err) {
    if (err instanceof PatternError) return err.message;
    throw err;
  }
}
