import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code (*.test.ts); end-to-end tests in test/ spawn the built CLI.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['packages/*/src/**/*.test.ts'], testTimeout: 30_000 } },
      { test: { name: 'e2e', include: ['test/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 120_000, fileParallelism: false } },
    ],
  },
});
