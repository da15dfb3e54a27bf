"""The llama.cpp engine: a GGUF through llama-cpp-python, and its parts."""
