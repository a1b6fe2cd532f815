import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'vmcs/**/*.test.ts', 'spec-tests/**/*.test.ts', 'fuzz/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
