// Mistyped commands: "did you mean …?" also without a terminal (oclif's not-found plugin only asks on one) and as JSON with --json.
import { toConfiguredId, type Hook } from '@oclif/core';
import { errUnknownCommand } from '@qforge/core';

/** Exit code of a command that does not exist (the shell's convention, and oclif's). */
const EXIT_NOT_FOUND = 127;

/** Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`: a swap is one typo, not two. */
export function typoDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The commands closest to `typed` (an oclif id, `quantise` or `plugins:instal`), ties all named;
 * none when no command is close enough to be a typo. Words after a mistyped command may be its
 * arguments: the longest leading run of words that is close to some command decides.
 */
export function closestCommands(typed: string, ids: string[]): string[] {
  const words = typed.toLowerCase().split(':');
  for (let n = words.length; n >= 1; n--) {
    const prefix = words.slice(0, n).join(':');
    // More than about a third of the word changed is another word, not a typo of this one.
    const limit = Math.max(2, Math.ceil(prefix.length / 3));
    const scored = ids.map((id) => ({ id, distance: typoDistance(prefix, id.toLowerCase()) })).filter((s) => s.distance <= limit);
    if (!scored.length) continue;
    const best = Math.min(...scored.map((s) => s.distance));
    return [...new Set(scored.filter((s) => s.distance === best).map((s) => s.id))];
  }
  return [];
}

const hook: Hook<'command_not_found'> = async function (opts) {
  const argv = opts.argv ?? [];
  const json = argv.includes('--json') || process.argv.includes('--json');
  // On a terminal, oclif's plugin asks "Did you mean …? (Y/n)" and runs the answer.
  if (!json && process.stdin.isTTY && process.stderr.isTTY) {
    const { default: ask } = (await import('@oclif/plugin-not-found')) as unknown as { default: Hook<'command_not_found'> };
    return ask.call(this, opts);
  }
  const hidden = new Set(opts.config.commands.filter((c) => c.hidden).map((c) => c.id));
  const ids = [...opts.config.commandIDs, ...opts.config.commands.flatMap((c) => c.aliases)].filter((id) => !hidden.has(id));
  const err = errUnknownCommand(
    toConfiguredId(opts.id, opts.config),
    closestCommands(opts.id, ids).map((id) => toConfiguredId(id, opts.config)),
    opts.config.bin,
  );
  if (json) process.stdout.write(JSON.stringify({ error: err.toJSON() }, null, 2) + '\n');
  else process.stderr.write(`error ${err.code}: ${err.message}\nhint: ${err.hint}\n`);
  this.exit(EXIT_NOT_FOUND);
};

export default hook;
