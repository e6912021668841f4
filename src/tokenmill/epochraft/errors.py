"""The one error type of the epochraft surface.

epochraft raises ``ValueError`` for bad arguments and bad token arrays, and code written for it catches that;
tokenmill code catches :class:`~tokenmill.errors.ConfigError`. This type is both.
"""

from __future__ import annotations

from tokenmill.errors import ConfigError


class EpochraftValueError(ConfigError, ValueError):
    """A bad argument or token array given to ``tokenmill.epochraft`` (a ``ValueError``, as in epochraft)."""
