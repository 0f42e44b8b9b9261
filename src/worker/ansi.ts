/**
 * Terminal escape sequences (colours, cursor moves, window titles) taken out of worker output:
 * Python libraries colour their log lines for a terminal, and in a log file or on a page those
 * codes read as noise like `[34m`. Carriage returns are kept: the log reader shows a redrawn
 * progress line as its last state.
 */

/** CSI (`ESC [ … final`), OSC (`ESC ] … BEL` or `ESC ] … ESC \`), and two-character escapes. */
const ESCAPE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\^_])|\x9b[0-?]*[ -/]*[@-~]/g;
/** The start of an escape that the next chunk may complete. */
const PARTIAL = /(?:\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?)?|\x9b[0-?]*[ -/]*)$/;
/** Longer than any real sequence: such a tail is text, not a sequence cut in two. */
const MAX_HELD = 256;

export function stripAnsi(text: string): string {
  return text.includes('\x1b') || text.includes('\x9b') ? text.replace(ESCAPE, '') : text;
}

/** Strips a stream given in chunks, holding back an escape cut at a chunk's end until the next one. */
export class AnsiStripper {
  private held = '';

  push(chunk: string): string {
    const text = stripAnsi(this.held + chunk);
    const partial = PARTIAL.exec(text);
    if (partial && partial[0].length > 0 && partial[0].length < MAX_HELD) {
      this.held = partial[0];
      return text.slice(0, partial.index);
    }
    this.held = '';
    return text;
  }

  /** What is still held at the end of the stream (an escape that never ended: dropped). */
  end(): string {
    const rest = this.held;
    this.held = '';
    return rest.startsWith('\x1b') || rest.startsWith('\x9b') ? '' : rest;
  }
}
