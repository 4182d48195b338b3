"""ConfigError: a refused configuration, always naming the file and, when known, the line.

It lives in core because the checks of configuration sit in the packages that define what
is checked (TF Serving's batching files in batching, device placement in servables, S3
credentials in sources) and those must not import config, which sits above them.
`servingd.config.errors` re-exports it.
"""

from __future__ import annotations


class ConfigError(Exception):
    def __init__(self, path: str, line: int | None, message: str, column: int | None = None):
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")
