"""Signatures in numpy terms, shared by every runtime (SavedModel, TF Lite).

A ``Signature`` is a SignatureDef whose inputs and outputs are ``TensorSpec``s: what to
feed, what comes back, and Predict's checks of a request against it (TF Serving's messages).
Nothing here needs TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from servingd.core import errors
from servingd.servables.codecs import (
    dtype_from_proto_enum,
    dtype_name,
    proto_enum_from_dtype,
    tensor_proto_to_ndarray,
)
from servingd.servables.signature_constants import (
    CLASSIFY_METHOD_NAME,
    DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    INIT_OP_SIGNATURE_KEY,
    PREDICT_METHOD_NAME,
    REGRESS_METHOD_NAME,
)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One signature tensor: graph tensor name, dtype, shape (-1 unknown dim, None unknown rank).

    ``dtype`` is None when the DataType has no numpy form (e.g. DT_INVALID of the init op).
    """

    name: str
    dtype_enum: int
    dtype: np.dtype[Any] | None
    shape: tuple[int, ...] | None

    @classmethod
    def from_tensor_info(cls, info: Any) -> TensorSpec:
        try:
            dtype: np.dtype[Any] | None = dtype_from_proto_enum(int(info.dtype))
        except errors.InvalidArgument:
            dtype = None
        ts = info.tensor_shape
        shape = None if ts.unknown_rank else tuple(int(d.size) for d in ts.dim)
        return cls(name=str(info.name), dtype_enum=int(info.dtype), dtype=dtype, shape=shape)

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype_enum)

    def accepts_dtype(self, dtype: np.dtype[Any]) -> bool:
        if self.dtype is None:
            return False
        if self.dtype.kind == "O":  # DT_STRING: object arrays of bytes, or fixed-width bytes
            return dtype.kind in "OS"
        return dtype == self.dtype

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def shape_str(self) -> str:
        return "unknown rank" if self.shape is None else str(list(self.shape))


def _braces(names: Sequence[str] | set[str]) -> str:
    return "{" + ",".join(sorted(names)) + "}"


class TensorRun(NamedTuple):
    """A Predict request checked against a signature, in the graph's terms: what each
    runtime feeds and fetches by tensor name, and the aliases its answer is keyed by."""

    feed_names: tuple[str, ...]
    feeds: list[np.ndarray]
    fetch_names: tuple[str, ...]
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Signature:
    """A SignatureDef in numpy terms: what to feed, what comes back, with Predict's checks."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    defaults: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_signature_def(cls, name: str, sig: Any) -> Signature:
        return cls(
            name=name,
            method_name=str(sig.method_name),
            inputs=MappingProxyType(
                {a: TensorSpec.from_tensor_info(t) for a, t in sorted(sig.inputs.items())}
            ),
            outputs=MappingProxyType(
                {a: TensorSpec.from_tensor_info(t) for a, t in sorted(sig.outputs.items())}
            ),
            defaults=MappingProxyType(
                {a: tensor_proto_to_ndarray(p) for a, p in sorted(sig.defaults.items())}
            ),
        )

    def validate_inputs(
        self, inputs: Mapping[str, np.ndarray], *, strict_shapes: bool = False
    ) -> list[np.ndarray]:
        """Check a Predict request's inputs; return the feeds in ``self.inputs`` order.

        The checks and messages are TF Serving's (predict_util.cc, saved_model/util.cc):
        method name, input count, every signature alias present (or defaulted), no
        unknown alias. Then, which TF Serving leaves to the runtime: each dtype must equal
        the signature's. Shapes are checked only with ``strict_shapes`` (rank and known
        dims), since TF Serving feeds tensors by name without a shape check and popular
        requests depend on that (``{"instances": [1.0, 2.0, 5.0]}`` to half_plus_two,
        whose ``x`` is ``[-1, 1]``); without it, a shape the graph cannot take fails in
        TensorFlow with its own INVALID_ARGUMENT.
        """
        if self.method_name not in (PREDICT_METHOD_NAME, CLASSIFY_METHOD_NAME, REGRESS_METHOD_NAME):
            raise errors.Internal(
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD_NAME}, {CLASSIFY_METHOD_NAME}, {REGRESS_METHOD_NAME}}}. "
                f"Was: {self.method_name}"
            )
        sent = set(inputs)
        wanted = set(self.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not self.defaults):
            raise errors.InvalidArgument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({_braces(sent)}) != len({_braces(wanted)}). "
                f"Sent extra: {_braces(sent - wanted)}. "
                f"Missing but required: {_braces(wanted - sent)}."
            )
        feeds: list[np.ndarray] = []
        for alias, spec in self.inputs.items():
            if alias in inputs:
                value = np.asarray(inputs[alias])
            elif alias in self.defaults:
                value = self.defaults[alias]
            else:
                raise errors.InvalidArgument(
                    f"Signature input alias: {alias}(feed name: {spec.name}) not found in "
                    "request and no default value provided. Inputs expected to be in the "
                    f"request {_braces(sent)}, or default input alias set: "
                    + ",".join(sorted(self.defaults))
                )
            if not spec.accepts_dtype(value.dtype):
                got = value.dtype.name
                with contextlib.suppress(errors.InvalidArgument):
                    got = dtype_name(proto_enum_from_dtype(value.dtype))
                raise errors.InvalidArgument(
                    f"input tensor alias {alias} (tensor {spec.name}): expected dtype "
                    f"{spec.dtype_name} but got {got}"
                )
            if spec.dtype is not None and spec.dtype.kind == "O" and value.dtype.kind == "S":
                value = value.astype(object)
            if strict_shapes and not spec.accepts_shape(value.shape):
                raise errors.InvalidArgument(
                    f"input tensor alias {alias} (tensor {spec.name}): expected shape "
                    f"{spec.shape_str()} but got {list(value.shape)}"
                )
            feeds.append(value)
        unknown = sent - wanted
        if unknown:
            raise errors.InvalidArgument(
                "Inputs contains invalid name. Used request inputs: "
                + ",".join(sorted(sent & wanted))
                + ", request input: "
                + ",".join(sorted(sent))
            )
        return feeds

    def tensor_run(
        self,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        strict_shapes: bool = False,
    ) -> TensorRun:
        """`validate_inputs` and `validate_output_filter`, then the tensor names they map to."""
        feeds = self.validate_inputs(inputs, strict_shapes=strict_shapes)
        aliases = self.validate_output_filter(output_filter)
        return TensorRun(
            tuple(spec.name for spec in self.inputs.values()),
            feeds,
            tuple(self.outputs[a].name for a in aliases),
            aliases,
        )

    def validate_output_filter(self, output_filter: Sequence[str]) -> tuple[str, ...]:
        """Output aliases to fetch, in order; all of them (sorted) when the filter is empty."""
        seen: list[str] = []
        for alias in output_filter:
            if alias not in self.outputs:
                raise errors.InvalidArgument(
                    f"output tensor alias not found in signature: {alias} "
                    f"Outputs expected to be in the set {_braces(set(self.outputs))}."
                )
            if alias in seen:
                raise errors.InvalidArgument(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return tuple(seen) if seen else tuple(self.outputs)


class SignatureLookup:
    """A servable's signatures by key, from its MetaGraphDef (every runtime has one)."""

    def __init__(self, meta_graph_def: Any) -> None:
        self.meta_graph_def = meta_graph_def
        self._signatures = {
            name: Signature.from_signature_def(name, sig)
            for name, sig in meta_graph_def.signature_def.items()
        }

    def signature_def_map(self, *, include_init_op: bool = True) -> Mapping[str, Any]:
        """The SignatureDefs by key, as GetModelMetadata returns them.

        TF Serving's metadata copies every SignatureDef of the MetaGraphDef, the TF2
        ``__saved_model_init_op`` pseudo-signature included; ``include_init_op=False``
        leaves that one out.
        """
        sigs = self.meta_graph_def.signature_def
        return MappingProxyType(
            {k: sigs[k] for k in sorted(sigs) if include_init_op or k != INIT_OP_SIGNATURE_KEY}
        )

    def signature(self, name: str = "") -> Signature:
        """The named signature; "" means ``serving_default`` (TF Serving's rule)."""
        key = name or DEFAULT_SERVING_SIGNATURE_DEF_KEY
        try:
            return self._signatures[key]
        except KeyError:
            raise errors.FailedPrecondition(f'Serving signature key "{key}" not found.') from None
