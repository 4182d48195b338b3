"""TF Lite delegates a model's drop-in may ask for (``delegate:``), checked with the config.

``edgetpu`` is the Coral Edge TPU's runtime library, ``libedgetpu.so.1`` (Debian package
``libedgetpu1-std`` from Coral's repository); anything else is a delegate library's path.
A library that cannot be loaded here is refused when the configuration is checked
(startup, --check_config, reload), as a missing GPU is, not at the first load.
"""

from __future__ import annotations

import ctypes
import os

EDGETPU = "edgetpu"
EDGETPU_LIBRARY = "libedgetpu.so.1"


def delegate_library(delegate: str) -> str:
    """The shared library behind a ``delegate:`` value."""
    return EDGETPU_LIBRARY if delegate == EDGETPU else delegate


def delegate_problem(delegate: str) -> str | None:
    """Why the delegate's library cannot be loaded on this machine; None when it can."""
    library = delegate_library(delegate)
    if os.sep in library and not os.path.isfile(library):
        return f"{library} does not exist"
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        hint = (
            " (install the Edge TPU runtime, libedgetpu1-std, from Coral's package repository)"
            if delegate == EDGETPU
            else ""
        )
        return f"cannot load {library}: {exc}{hint}"
    return None
