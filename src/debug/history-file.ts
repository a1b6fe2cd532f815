/**
 * The interactive debugger's command history, kept between sessions in a
 * file: `~/.hvsim_history`, or the file HVSIM_HISTORY names (none when that
 * variable is set but empty). Only the REPL on a terminal uses it; scripts
 * (`--commands`, stdin that is not a terminal) neither read nor add to it.
 *
 * One command a line, oldest first, at most HISTORY_LINES of them. At the end
 * of a session its commands are added to what the file holds then (another
 * session may have added its own meanwhile), the oldest dropped beyond the
 * bound, and the file replaced as a whole (written beside it, then renamed),
 * so that a session ended half-way never leaves a truncated file.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Commands kept in the history file. */
export const HISTORY_LINES = 1000;

/** The history file: HVSIM_HISTORY if set (null when empty: no history kept), else ~/.hvsim_history. */
export function historyPath(env: Readonly<Record<string, string | undefined>> = process.env, home: string = homedir()): string | null {
  const named = env.HVSIM_HISTORY;
  if (named !== undefined) return named === '' ? null : named;
  return join(home, '.hvsim_history');
}

/** The commands in the history file, oldest first; none when it does not exist or cannot be read. */
export function loadHistory(path: string, max = HISTORY_LINES): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').map((l) => l.trimEnd()).filter((l) => l !== '').slice(-max);
}

/**
 * Adds a session's commands (oldest first) to the history file, keeping the
 * last `max`. Returns null, or why the file could not be written (one line).
 */
export function appendHistory(path: string, added: readonly string[], max = HISTORY_LINES): string | null {
  if (added.length === 0) return null;
  const lines = [...loadHistory(path, max), ...added].slice(-max);
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, `${lines.join('\n')}\n`, { mode: 0o600 });
    renameSync(temporary, path);
    return null;
  } catch (e) {
    rmSync(temporary, { force: true });
    return `cannot write the history file '${path}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
}

/** The commands of a session as the history keeps them: no empty lines, no line repeating the one before. */
export class SessionHistory {
  private readonly lines: string[] = [];

  constructor(private last: string | null = null) {}

  add(line: string): void {
    const l = line.trim();
    if (l === '' || l === this.last) return;
    this.lines.push(l);
    this.last = l;
  }

  get added(): readonly string[] { return this.lines; }
}
