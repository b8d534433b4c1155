// Only this folder's own test files; no watch; one worker (the machine is shared).
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.mjs"],
    watch: false,
    fileParallelism: false,
    testTimeout: 30000,
    hookTimeout: 30000,
  },
})
