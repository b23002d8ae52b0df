import { defineConfig } from "vitest/config";

// Unit tests of the TypeScript frontend live next to the modules they test (js/**/*.test.ts).
export default defineConfig({
  test: {
    include: ["js/**/*.test.ts"],
    environment: "node",
  },
});
