"""Tokenizer tests: engines over the tokenizer families people use, loading, objects (a package, so that its
conftest and helpers have names of their own)."""
