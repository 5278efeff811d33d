import { readdirSync } from "node:fs";
import path from "node:path";
import { expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { openRead } from "../../src/io/read.ts";
import { isPytorch, openPytorchLayout } from "../../src/pickle/layout.ts";

const dir = path.resolve(process.cwd(), "../shared/fixtures/malicious");

// Each payload, under plain pickle, runs a command or code that creates a file in the working directory.
test.each([
  ["builtins-exec.pt", "refused global __builtin__.exec"],
  ["os-system.pt", "refused global posix.system"],
  ["raw-os-system.pkl", "refused global posix.system"],
])("%s is refused and leaves no file behind", (file, message) => {
  const before = readdirSync(process.cwd()).sort();
  const source = openRead(path.join(dir, file));
  expect(isPytorch(source.bytes(0, 8))).toBe(true);
  let error: unknown;
  try {
    openPytorchLayout(source);
  } catch (e) {
    error = e;
  } finally {
    source.close();
  }
  expect(error).toBeInstanceOf(SafetensorsError);
  expect(error).toMatchObject({ code: "UnsafePickle", message });
  expect(readdirSync(process.cwd()).sort()).toEqual(before);
});
