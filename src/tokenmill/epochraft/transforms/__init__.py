"""epochraft's import paths for the helpers that user code imports from inside its package."""
