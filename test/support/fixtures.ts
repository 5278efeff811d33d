import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/** The shared fixtures written by the reference tools, read in place (`../shared/fixtures`). */
export const FIXTURES = resolve(process.cwd(), "../shared/fixtures");

export const fixture = (...parts: string[]) => resolve(FIXTURES, ...parts);

export interface Expected {
  dtype: string;
  shape: number[];
  nbytes: number;
  sha256: string;
  values?: Array<number | string | [number | string, number | string]>;
}

/** An `*.expected.json` listing: tensor name → what the reference tools say about it. */
export function expected(...parts: string[]): Record<string, Expected> {
  return JSON.parse(readFileSync(fixture(...parts), "utf8"));
}

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** The fixtures spell non-finite floats as strings. */
export const num = (v: number | string) => (v === "inf" ? Infinity : v === "-inf" ? -Infinity : v === "nan" ? NaN : Number(v));
