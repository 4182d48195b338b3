"""Identity of one servable version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class ServableId:
    """A model name plus one numeric version: the unit that is loaded, served and unloaded."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{{name: {self.name} version: {self.version}}}"


def model_fields(servable_id: ServableId) -> dict[str, str]:
    """The journal fields of a log line about one version (`extra=` of a logging call)."""
    return {"MODEL_NAME": servable_id.name, "MODEL_VERSION": str(servable_id.version)}


def name_field(name: str) -> dict[str, str]:
    """The journal field of a log line about a model as a whole."""
    return {"MODEL_NAME": name}
