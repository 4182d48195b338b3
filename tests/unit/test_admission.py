"""In-flight caps, element counting and bearer-token checks (no server)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework.tensor_pb2 import TensorProto

from servingd.apis.admission import (
    AdmissionOptions,
    InFlightLimiter,
    check_arrays,
    check_tensor_protos,
)
from servingd.apis.auth import BearerToken
from servingd.core.errors import InvalidArgument, Unauthenticated, Unavailable


def test_server_cap_refuses_at_once_and_release_frees_a_slot() -> None:
    limiter = InFlightLimiter(
        AdmissionOptions(max_in_flight=2, max_in_flight_per_model=0, max_tensor_elements=0)
    )
    first, second = limiter.acquire("a"), limiter.acquire("b")
    with pytest.raises(Unavailable, match="--max_in_flight_requests"):
        limiter.acquire("c")
    first()
    first()  # a second release of the same slot changes nothing
    assert limiter.in_flight == 1
    limiter.acquire("c")
    second()
    assert limiter.in_flight == 1


def test_per_model_cap_leaves_other_models_alone() -> None:
    limiter = InFlightLimiter(
        AdmissionOptions(max_in_flight=0, max_in_flight_per_model=1, max_tensor_elements=0)
    )
    release = limiter.acquire("a")
    with pytest.raises(Unavailable, match="Model a overloaded"):
        limiter.acquire("a")
    limiter.acquire("b")
    release()
    limiter.acquire("a")


def test_element_limit_counts_declared_shapes_not_values() -> None:
    proto = TensorProto()
    proto.tensor_shape.dim.add(size=1000)
    proto.tensor_shape.dim.add(size=1000)
    proto.float_val.append(1.0)
    check_tensor_protos({"x": proto}, 1_000_000)
    with pytest.raises(InvalidArgument, match="'y' brings the request to 2000000"):
        check_tensor_protos({"x": proto, "y": proto}, 1_500_000)
    check_tensor_protos({"x": proto, "y": proto}, 0)  # 0: no limit
    negative = TensorProto()
    negative.tensor_shape.dim.add(size=-1)
    with pytest.raises(InvalidArgument, match="negative"):
        check_tensor_protos({"x": negative}, 10)
    with pytest.raises(InvalidArgument):
        check_arrays({"x": np.zeros((4, 4))}, 15)


def test_bearer_token() -> None:
    token = BearerToken("abc")
    token.check("Bearer abc")
    token.check("bearer abc ")
    for bad in (None, "", "abc", "Bearer abd", "Basic abc", "Bearer "):
        with pytest.raises(Unauthenticated):
            token.check(bad)
    with pytest.raises(ValueError):
        BearerToken("")
