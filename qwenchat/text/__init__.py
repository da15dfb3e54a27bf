"""Pure leaf functions on text: think blocks, code fences, visible control characters, word diff, numbers."""
