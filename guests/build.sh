#!/usr/bin/env bash
# Rebuilds the committed guest binaries from their assembly source (needs nasm).
set -euo pipefail
cd "$(dirname "$0")"
for src in *.asm; do
  nasm -f bin -o "${src%.asm}.bin" "$src"
done
