#!/usr/bin/env node
// The `cachegraph` command. In a checkout (lib/ is here and tsx is installed: `npm ci`),
// it runs the TypeScript sources through tsx, so no build step is needed and what runs is
// what is in lib/. In an installed package (no lib/), it runs the build in dist/.
import { existsSync } from 'node:fs';

const source = new URL('../lib/cli/main.ts', import.meta.url);
const built = new URL('../dist/cli/main.js', import.meta.url);

async function load() {
  if (existsSync(source)) {
    try {
      const { register } = await import('tsx/esm/api');
      register();
      return await import(source.href);
    } catch (error) {
      if (!existsSync(built) || error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
    }
  }
  if (!existsSync(built)) {
    process.stderr.write('cachegraph: neither lib/cli/main.ts with tsx (run `npm ci`) nor dist/cli/main.js (run `npm run build`) is available\n');
    process.exit(1);
  }
  return import(built.href);
}

const { main } = await load();
process.exitCode = await main(process.argv.slice(2));
