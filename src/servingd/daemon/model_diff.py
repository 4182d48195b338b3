"""What a reload changes in the set of models: the models added or changed (reloaded,
their labels applied again) and those removed. Unchanged models are not touched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from servingd.config.models import ModelConfig


@dataclass(frozen=True)
class ModelDiff:
    models: dict[str, ModelConfig]  # the new set, by name
    changed: list[str]  # added or changed, in the new set's order
    removed: list[str]  # in the old set's order

    def describe(self) -> str:
        return (
            f"{len(self.models)} model(s); added or changed: {', '.join(self.changed) or 'none'}"
            f"; removed: {', '.join(self.removed) or 'none'}"
        )


def diff_models(old: Mapping[str, ModelConfig], new: Sequence[ModelConfig]) -> ModelDiff:
    models = {m.name: m for m in new}
    return ModelDiff(
        models,
        changed=[n for n, m in models.items() if old.get(n) != m],
        removed=[n for n in old if n not in models],
    )
