"""Reading a TF Serving text-proto file, with its errors at file:line:col.

In core because batching reads TF Serving's batching_parameters files with it and config
its ModelServerConfig, SSLConfig and MonitoringConfig files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import text_format

from servingd.core.config_error import ConfigError


def parse_text_proto(path: str, message: Any) -> Any:
    """Parses a text-proto file into `message`; ConfigError names file:line:col."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        line = exc.GetLine() if hasattr(exc, "GetLine") else None
        col = exc.GetColumn() if hasattr(exc, "GetColumn") else None
        detail = str(exc)
        prefix = f"{line}:{col} : "
        if line is not None and detail.startswith(prefix):
            detail = detail[len(prefix) :]
        # Protobuf's own wording, as tensorflow_model_server prints it (scripts grep for it).
        where = f"{line}:{col}: " if line is not None else ""
        raise ConfigError(
            path,
            line,
            f"Error parsing text-format {message.DESCRIPTOR.full_name}: {where}{detail}",
            col,
        ) from None
    return message
