import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'cli/main': 'src/cli/main.ts',
    'fuzz/index': 'fuzz/index.ts',
    'bench/run': 'bench/run.ts',
    'bench/reproduce': 'bench/reproduce.ts',
  },
  format: ['esm'],
  target: 'node20',
  dts: { entry: { index: 'src/index.ts', 'fuzz/index': 'fuzz/index.ts' } },
  clean: true,
  sourcemap: true,
  splitting: true,
});
