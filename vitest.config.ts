import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    // Forks, not threads: each test file gets a real process of the runtime under test (Node, Bun or Deno).
    pool: "forks",
    testTimeout: 60_000,
  },
});
