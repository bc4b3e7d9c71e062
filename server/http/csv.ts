/**
 * RFC 4180 quoting, and a quote mark before text a spreadsheet would run as a formula: at a text
 * cell's start, and after a `;`, tab or line break in it, since a spreadsheet in a locale whose list separator
 * is `;` (German, French…) splits lines there: a member-chosen session id `sess;=cmd|…` would
 * otherwise open as a cell of its own starting with `=`. Cells holding either are quoted too.
 * Control characters other than tab and line breaks become U+FFFD.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;

function csvCell(v: unknown): string {
  let s = v === null || v === undefined ? '' : String(v);
  if (typeof v === 'string') {
    // Escape sequences a member put in a prompt or session id would act on the terminal of an
    // admin who reads the export there (`aibridge audit export --format csv` writes to stdout):
    // clear the screen, draw a fake "chain intact", hide links. JSON escapes them; CSV cannot.
    s = s.replace(CONTROL, '\uFFFD');
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    // A spreadsheet reading the file with `;` (or tab) as its separator splits there whatever the
    // quotes say, and a line break inside the cell starts a row there; so what follows one (past
    // any quote marks, which the split may read as opening a quoted cell) must not start a formula.
    s = s.replace(/[;\t\r\n]"*(?=[=+\-@\t\r])/g, "$&'");
  }
  return /[",;\t\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** One CSV line, CRLF-terminated. */
export function csvLine(cells: readonly unknown[]): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}
