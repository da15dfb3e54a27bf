"""The OpenAI-compatible engine: any server speaking chat completions (vLLM, SGLang, llama.cpp)."""
