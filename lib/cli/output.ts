/**
 * How the CLI prints: aligned text tables, sizes and times for people, a progress bar on
 * long operations when stdout is a terminal, and JSON for scripts.
 *
 * @module
 */

import type { Writable } from 'node:stream';

/**
 * Where a command writes, and whether a person is watching.
 *
 * @example
 * const out: Output = { stdout: process.stdout, stderr: process.stderr, tty: process.stdout.isTTY === true, json: false };
 */
export interface Output {
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** stdout is a terminal: progress bars are drawn (on stderr). */
  readonly tty: boolean;
  /** `--json`: one JSON document on stdout, no decoration. */
  readonly json: boolean;
}

/**
 * Writes a line to stdout.
 *
 * @example
 * println(out, 'done');
 */
export function println(out: Output, text = ''): void {
  out.stdout.write(`${text}\n`);
}

/**
 * Writes `value` as JSON (2-space indented) to stdout.
 *
 * @example
 * printJson(out, { caches: [] });
 */
export function printJson(out: Output, value: unknown): void {
  out.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Formats rows as columns separated by two spaces; numbers-looking cells are right-aligned.
 *
 * @example
 * table(['NAME', 'ENTRIES'], [['users', '12']]); // 'NAME   ENTRIES\nusers       12'
 */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const right = header.map((_, i) => rows.length > 0 && rows.every((row) => /^[-\d.,]+( ?[KMGT]?i?B)?$|^-$|^\?$/.test(row[i] ?? '')));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (right[i] === true ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/**
 * A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
 *
 * @example
 * formatBytes(1536); // '1.5 KiB'
 */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * A time (ms since the epoch) as ISO 8601 without milliseconds; `-` for none.
 *
 * @example
 * formatTime(0); // '-'
 */
export function formatTime(ms: number | undefined): string {
  if (ms === undefined || ms <= 0 || !Number.isFinite(ms)) return '-';
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A progress bar on stderr, redrawn in place, for operations over many caches. Silent
 * unless stdout is a terminal and the output is not JSON.
 *
 * @example
 * const bar = new ProgressBar(out, 'verify', names.length);
 * for (const name of names) { await check(name); bar.tick(name); }
 * bar.done();
 */
export class ProgressBar {
  readonly #out: Output;
  readonly #label: string;
  readonly #total: number;
  readonly #enabled: boolean;
  #done = 0;
  #lastDraw = 0;

  /**
   * @param out - where to draw
   * @param label - what is being done
   * @param total - how many steps
   */
  constructor(out: Output, label: string, total: number) {
    this.#out = out;
    this.#label = label;
    this.#total = total;
    this.#enabled = out.tty && !out.json && total > 1;
  }

  /**
   * One step done; redraws at most every 50 ms (and on the last step).
   *
   * @example
   * bar.tick('users');
   */
  tick(item = ''): void {
    this.#done = Math.min(this.#total, this.#done + 1);
    this.update(this.#done, item);
  }

  /**
   * Sets the number of steps done and redraws.
   *
   * @example
   * bar.update(3, 'stats');
   */
  update(done: number, item = ''): void {
    this.#done = done;
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#lastDraw < 50 && done < this.#total) return;
    this.#lastDraw = now;
    const width = 24;
    const filled = this.#total === 0 ? width : Math.round((width * done) / this.#total);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    const text = `${this.#label} [${bar}] ${done}/${this.#total} ${item}`.slice(0, 100);
    this.#out.stderr.write(`\r\x1b[2K${text}`);
  }

  /**
   * Erases the bar.
   *
   * @example
   * bar.done();
   */
  done(): void {
    if (this.#enabled) this.#out.stderr.write('\r\x1b[2K');
  }
}
