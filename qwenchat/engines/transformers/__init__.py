"""The transformers engine and its parts (generation config, compile, budget, probs, schema, adapters)."""
