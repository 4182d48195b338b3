"""ConfigError, defined in core (the packages below config raise it too)."""

from __future__ import annotations

from servingd.core.config_error import ConfigError

__all__ = ["ConfigError"]
