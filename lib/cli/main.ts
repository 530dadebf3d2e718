/**
 * `cachegraph`: the command line. Parses the arguments (node:util `parseArgs`), opens the
 * store, runs one subcommand and resolves its exit code (see {@link EXIT}).
 *
 * ```sh
 * cachegraph ls --dir ./.cache
 * cachegraph invalidate users --dry-run --redis redis://127.0.0.1:6379
 * ```
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { serveStore } from '../admin/serve.js';
import * as commands from './commands.js';
import type { CommandRun } from './commands.js';
import type { Output } from './output.js';
import { describeTarget, EXIT, explain, openStore, UsageError, type StoreTarget } from './store.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** One subcommand: what it does, its arguments and options, and whether it writes. */
interface CommandSpec {
  readonly usage: string;
  readonly summary: string;
  readonly details: string;
  readonly options: Options;
  readonly optionHelp: readonly (readonly [string, string])[];
  /** Writes to the store (takes a FileStore directory's lock). */
  readonly write: boolean;
  readonly run: CommandRun;
}

const GLOBAL_OPTIONS: Options = {
  dir: { type: 'string' },
  redis: { type: 'string' },
  namespace: { type: 'string' },
  'key-prefix': { type: 'string' },
  wait: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const GLOBAL_HELP: readonly (readonly [string, string])[] = [
  ['--dir DIR', 'a cache directory (FileStore); or $CACHEGRAPH_DIR'],
  ['--redis URL', 'a Redis server (RedisStore); or $CACHEGRAPH_REDIS, which keeps a password out of `ps`'],
  ['--namespace NAME', 'RedisStore namespace (default: default)'],
  ['--key-prefix PREFIX', 'RedisStore key prefix (default: cg:)'],
  ['--wait MS', "commands that write: how long to wait for a directory's writer lock (default 0)"],
  ['--json', 'print one JSON document, for scripts'],
  ['-h, --help', 'help'],
];

const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  ls: {
    usage: 'ls',
    summary: 'list saved caches: entries, bytes, last save, dirty bytes, links',
    details: 'DIRTY is the size of the changes appended since the last snapshot (FileStore logs), which `compact` folds in.',
    options: {},
    optionHelp: [],
    write: false,
    run: commands.ls,
  },
  show: {
    usage: 'show <cache> [key]',
    summary: "show a cache's facts and first entries, or one key's value",
    details: 'A key is a string unless --key-json is given.',
    options: { 'key-json': { type: 'boolean' }, limit: { type: 'string' }, all: { type: 'boolean' } },
    optionHelp: [
      ['--key-json', 'parse the key as JSON (numbers, arrays, objects)'],
      ['--limit N', 'entries to show (default 20)'],
      ['--all', 'show every entry'],
    ],
    write: false,
    run: commands.show,
  },
  verify: {
    usage: 'verify [cache...]',
    summary: 'read every copy and check every checksum; exit 1 on damage, naming file and offset',
    details: 'A partly written last batch (a crash during an append) is a warning: the writer cuts it off on its next load.',
    options: {},
    optionHelp: [],
    write: false,
    run: commands.verify,
  },
  compact: {
    usage: 'compact [cache...]',
    summary: 'fold FileStore logs into fresh snapshots (needs the directory lock)',
    details: 'RedisStore keeps no log: nothing to do there.',
    options: {},
    optionHelp: [],
    write: true,
    run: commands.compact,
  },
  invalidate: {
    usage: 'invalidate <cache> [--dry-run]',
    summary: 'delete the copies of a cache and of everything downstream of it',
    details:
      'The cascade follows the links the saves recorded. On Redis the copies go in one atomic script and running applications are told on the bus.',
    options: { 'dry-run': { type: 'boolean' } },
    optionHelp: [['--dry-run', 'only list what would be invalidated']],
    write: true,
    run: commands.invalidate,
  },
  graph: {
    usage: 'graph [--format mermaid|dot]',
    summary: 'print the dependency graph (Mermaid or Graphviz DOT)',
    details: 'Caches that are linked but have no saved copy are drawn dashed.',
    options: { format: { type: 'string' } },
    optionHelp: [['--format F', 'mermaid (default) or dot']],
    write: false,
    run: commands.graph,
  },
  export: {
    usage: 'export [cache...] [--out FILE]',
    summary: 'write caches as JSON lines (see docs/cli.md for the format)',
    details: 'Values JSON cannot keep exactly are written as base64 of their v8 serialization.',
    options: { out: { type: 'string' } },
    optionHelp: [['--out FILE', 'write to FILE (mode 0600) instead of stdout']],
    write: false,
    run: commands.exportCaches,
  },
  import: {
    usage: 'import [FILE]',
    summary: 'replace the copies of the caches in a JSON-lines export (stdin without FILE)',
    details: 'Each cache in the file is saved whole, with its recorded links; other caches are untouched.',
    options: {},
    optionHelp: [],
    write: true,
    run: commands.importCaches,
  },
  stats: {
    usage: 'stats',
    summary: 'totals: caches, entries, bytes, links, quarantined copies',
    details: '',
    options: {},
    optionHelp: [],
    write: false,
    run: commands.stats,
  },
  serve: {
    usage: 'serve [--port N] [--host ADDR] [--token T]',
    summary: 'run the admin service and dashboard on the store',
    details:
      'Binds 127.0.0.1 by default. Invalidation needs a bearer token when one is set ($CACHEGRAPH_TOKEN) and always on a non-loopback address. Stops on SIGINT/SIGTERM.',
    options: { port: { type: 'string' }, host: { type: 'string' }, token: { type: 'string' } },
    optionHelp: [
      ['--port N', 'port (default 9470; 0 for any free one)'],
      ['--host ADDR', 'address to bind (default 127.0.0.1)'],
      ['--token T', 'bearer token for invalidation; or $CACHEGRAPH_TOKEN'],
    ],
    write: true,
    run: async () => EXIT.ok, // replaced in main(): serving outlives the command
  },
};

function helpColumns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join('\n');
}

/**
 * The text of `cachegraph --help`, or of `cachegraph <command> --help`.
 *
 * @example
 * helpText('invalidate'); // 'Usage: cachegraph invalidate <cache> [--dry-run] …'
 */
export function helpText(command?: string): string {
  const spec = command === undefined ? undefined : COMMANDS[command];
  if (spec === undefined) {
    return [
      'Usage: cachegraph <command> [options]   (--dir DIR | --redis URL)',
      '',
      'Commands:',
      helpColumns(Object.entries(COMMANDS).map(([name, c]) => [name, c.summary])),
      '',
      'Options:',
      helpColumns(GLOBAL_HELP),
      '',
      'Exit codes: 0 ok; 1 damage found, unknown cache or failed operation; 2 usage error;',
      '            3 store unavailable (Redis unreachable, directory locked by a running writer).',
      '',
      'cachegraph <command> --help shows the options of one command.',
    ].join('\n');
  }
  return [
    `Usage: cachegraph ${spec.usage}   (--dir DIR | --redis URL)`,
    '',
    `${spec.summary.charAt(0).toUpperCase()}${spec.summary.slice(1)}.${spec.details === '' ? '' : ` ${spec.details}`}`,
    ...(spec.optionHelp.length === 0 ? [] : ['', 'Options:', helpColumns(spec.optionHelp)]),
    '',
    'Global options:',
    helpColumns(GLOBAL_HELP),
  ].join('\n');
}

/**
 * What {@link main} needs from the process; tests pass their own streams.
 *
 * @example
 * await main(['ls', '--dir', '.cache'], { stdout, stderr, env: {} });
 */
export interface MainIO {
  readonly stdout: NodeJS.WritableStream & Output['stdout'];
  readonly stderr: NodeJS.WritableStream & Output['stderr'];
  readonly env: NodeJS.ProcessEnv;
  /** stdout is a terminal (progress bars); default: `stdout.isTTY`. */
  readonly tty?: boolean;
}

function numberOption(value: unknown, option: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isInteger(n) || n < 0) throw new UsageError(`${option} must be a whole number ≥ 0, not ${JSON.stringify(value)}`);
  return n;
}

/** Where the command name is: the first argument that is neither an option nor an option's value. */
function commandIndex(argv: readonly string[]): number {
  const takesValue = new Set<string>();
  for (const options of [GLOBAL_OPTIONS, ...Object.values(COMMANDS).map((c) => c.options)]) {
    for (const [option, config] of Object.entries(options)) if (config.type === 'string') takesValue.add(`--${option}`);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (!arg.startsWith('-')) return i;
    if (takesValue.has(arg)) i++;
  }
  return -1;
}

/**
 * Runs `cachegraph` with `argv` (without `node` and the script) and resolves the exit code.
 * `serve` resolves only once the server is closed (SIGINT or SIGTERM).
 *
 * @example
 * process.exitCode = await main(process.argv.slice(2));
 */
export async function main(argv: readonly string[], io: MainIO = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const at = commandIndex(argv);
  const name = at === -1 ? undefined : argv[at];
  const spec = name === undefined ? undefined : COMMANDS[name];
  const out: Output = { stdout: io.stdout, stderr: io.stderr, tty: io.tty ?? (io.stdout as { isTTY?: boolean }).isTTY === true, json: argv.includes('--json') };
  const fail = (code: number, message: string): number => {
    if (out.json) out.stdout.write(`${JSON.stringify({ error: message, exitCode: code })}\n`);
    io.stderr.write(`cachegraph${name === undefined ? '' : ` ${name}`}: ${message}\n`);
    return code;
  };
  if (name === undefined || spec === undefined) {
    if (argv.includes('--help') || argv.includes('-h') || argv.length === 0) {
      io.stdout.write(`${helpText()}\n`);
      return argv.length === 0 ? EXIT.usage : EXIT.ok;
    }
    return fail(EXIT.usage, name === undefined ? 'no command given (see cachegraph --help)' : `unknown command ${JSON.stringify(name)} (see cachegraph --help)`);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv.filter((_, i) => i !== at), options: { ...GLOBAL_OPTIONS, ...spec.options }, allowPositionals: true, strict: true });
  } catch (error) {
    return fail(EXIT.usage, `${error instanceof Error ? error.message.replace(/\. To specify a positional.*$/s, '') : String(error)} (see cachegraph ${name} --help)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values['help'] === true) {
    io.stdout.write(`${helpText(name)}\n`);
    return EXIT.ok;
  }
  let store;
  try {
    const target: StoreTarget = {
      dir: (values['dir'] as string | undefined) ?? (values['redis'] === undefined ? io.env['CACHEGRAPH_DIR'] : undefined),
      redis: (values['redis'] as string | undefined) ?? (values['dir'] === undefined && io.env['CACHEGRAPH_DIR'] === undefined ? io.env['CACHEGRAPH_REDIS'] : undefined),
      namespace: values['namespace'] as string | undefined,
      keyPrefix: values['key-prefix'] as string | undefined,
      waitMs: numberOption(values['wait'], '--wait'),
    };
    store = openStore(target, { write: spec.write });
    const where = describeTarget(store, target);
    const ctx = { store, out, args: parsed.positionals, flags: values, where };
    if (name === 'serve') {
      const token = (values['token'] as string | undefined) ?? io.env['CACHEGRAPH_TOKEN'];
      const server = await serveStore(store, {
        port: numberOption(values['port'], '--port') ?? 9470,
        host: (values['host'] as string | undefined) ?? '127.0.0.1',
        ...(token === undefined || token === '' ? {} : { token }),
        label: where,
      });
      io.stdout.write(out.json ? `${JSON.stringify({ url: server.url })}\n` : `cachegraph admin on ${server.url} (store: ${where}); Ctrl-C stops it\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void server.close().finally(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      return EXIT.ok;
    }
    return await spec.run(ctx);
  } catch (error) {
    const { code, message } = explain(error);
    return fail(code, message);
  } finally {
    await store?.close().catch(() => undefined);
  }
}
