/**
 * The package's version, as `tensormap --version` prints it. A constant, not read from package.json at run
 * time: JSR publishes no package.json, and dist/ sits one folder deeper than src/. The package tests keep it
 * equal to package.json's (test/package/npm.test.ts) and deno.json's (test/package/jsr.test.ts).
 */
export const VERSION = "0.1.0";
