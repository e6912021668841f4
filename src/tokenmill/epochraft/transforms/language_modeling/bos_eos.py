"""``TokenizerBehavior`` at epochraft's path."""

from tokenmill.epochraft.boundaries import TokenizerBehavior

__all__ = ["TokenizerBehavior"]
