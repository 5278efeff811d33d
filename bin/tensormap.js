#!/usr/bin/env node
// The `tensormap` command. Plain JavaScript so any runtime can start it, and Node by default: `npx tensormap`
// needs nothing but Node. Node runs the tsc output in dist/ (the npm package ships it; in a checkout,
// `npm run build` makes it). Bun runs the TypeScript sources, and so does Deno, except from node_modules,
// where Deno does not strip types: there it runs dist/ too.
const runtime = typeof globalThis.Bun !== "undefined" ? "bun" : typeof globalThis.Deno !== "undefined" ? "deno" : "node";
const fromSources = runtime === "bun" || (runtime === "deno" && !import.meta.url.includes("/node_modules/"));
const entry = fromSources ? "../src/cli/main.ts" : "../dist/src/cli/main.js";

let cli;
try {
  cli = await import(entry);
} catch (e) {
  if (deniedByDeno(e)) {
    process.stderr.write("error: PermissionDenied: tensormap needs Deno's permissions: deno run -A bin/tensormap.js …\n");
    process.exit(1);
  }
  if (fromSources || e?.code !== "ERR_MODULE_NOT_FOUND") throw e;
  process.stderr.write("error: NotBuilt: dist/ is missing; run `npm run build`, or run tensormap with Bun or Deno\n");
  process.exit(1);
}
process.exitCode = await cli.main(process.argv.slice(2));

/**
 * Deno refused a permission: NotCapable (Deno 2) or PermissionDenied (Deno 1) from a module's top level, or,
 * for the import itself without --allow-read, a TypeError that says "Requires read access to …".
 */
function deniedByDeno(e) {
  const errors = globalThis.Deno?.errors;
  if (!errors) return false;
  return [errors.NotCapable, errors.PermissionDenied].some((type) => type && e instanceof type) || /^Requires \w+ access/.test(e?.message);
}
