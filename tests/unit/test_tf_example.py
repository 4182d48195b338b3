"""servables.tf_example's output checks and result building, on a servable that returns
chosen arrays (the model-side TF path is covered end to end in the integration tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, regression_pb2

from servingd.core import errors
from servingd.core.ids import ServableId
from servingd.servables import tf_example


class ArraysServable:
    """One signature ``sig`` whose outputs are the given arrays."""

    def __init__(self, method: str, outputs: Mapping[str, np.ndarray]) -> None:
        self.id = ServableId("m", 7)
        self.meta_graph_def = meta_graph_pb2.MetaGraphDef()
        sig = self.meta_graph_def.signature_def["sig"]
        sig.method_name = method
        sig.inputs["inputs"].name = "in:0"
        for alias in outputs:
            sig.outputs[alias].name = f"{alias}:0"
        self._outputs = {f"{alias}:0": array for alias, array in outputs.items()}
        self.fed: list[np.ndarray] = []

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
        in_caller_thread: bool = False,
    ) -> list[np.ndarray]:
        self.fed.append(feeds["in:0"])
        return [self._outputs[name] for name in fetch_names]


def request(kind: Any, n: int) -> Any:
    req = kind()
    req.model_spec.name = "m"
    req.model_spec.signature_name = "sig"
    for i in range(n):
        req.input.example_list.examples.add().features.feature["x"].float_list.value.append(i)
    return req


def test_classes_and_scores_become_labelled_classes() -> None:
    servable = ArraysServable(
        tf_example.CLASSIFY_METHOD_NAME,
        {
            "classes": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
            "scores": np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32),
        },
    )
    reply = tf_example.classify(servable, request(classification_pb2.ClassificationRequest, 2))
    assert reply.num_examples == 2
    got = [[(c.label, c.score) for c in cs.classes] for cs in reply.response.result.classifications]
    assert got == [[("a", 0.25), ("b", 0.75)], [("c", 1.0), ("d", 0.0)]]
    assert reply.response.model_spec.version.value == 7


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"scores": np.zeros(2, np.float32)}, "Expected Tensor shape: [batch_size num_classes]"),
        (
            {"scores": np.zeros((2, 1), np.float64)},
            "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE",
        ),
        ({"classes": np.zeros((2, 1), np.float32)}, "Expected classes Tensor of DT_STRING"),
        (
            {"scores": np.zeros((3, 1), np.float32)},
            "Expected scores output batch size of 2. Got: 3",
        ),
        (
            {
                "classes": np.array([[b"a"], [b"b"]], dtype=object),
                "scores": np.zeros((2, 2), np.float32),
            },
            "Tensors class and score should match in dim_size(1). Got 1 vs. 2",
        ),
    ],
)
def test_classification_output_checks(outputs: dict[str, np.ndarray], message: str) -> None:
    servable = ArraysServable(tf_example.CLASSIFY_METHOD_NAME, outputs)
    with pytest.raises(errors.InvalidArgument) as info:
        tf_example.classify(servable, request(classification_pb2.ClassificationRequest, 2))
    assert info.value.message.startswith(message)


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_regression_accepts_batch_or_batch_by_one(shape: tuple[int, ...]) -> None:
    values = np.array([1.5, 2.5, 3.5], np.float32).reshape(shape)
    servable = ArraysServable(tf_example.REGRESS_METHOD_NAME, {"outputs": values})
    reply = tf_example.regress(servable, request(regression_pb2.RegressionRequest, 3))
    assert [r.value for r in reply.response.result.regressions] == [1.5, 2.5, 3.5]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros((3, 2), np.float32), "Expected output Tensor shape to be either [batch_size]"),
        (np.zeros(2, np.float32), "Input batch size did not match output batch size: 3 vs. 2"),
        (np.zeros(3, np.int64), "Expected output Tensor of DT_FLOAT.  Got: DT_INT64"),
    ],
)
def test_regression_output_checks(values: np.ndarray, message: str) -> None:
    servable = ArraysServable(tf_example.REGRESS_METHOD_NAME, {"outputs": values})
    with pytest.raises(errors.InvalidArgument) as info:
        tf_example.regress(servable, request(regression_pb2.RegressionRequest, 3))
    assert info.value.message.startswith(message)


def test_method_name_is_checked_only_when_asked() -> None:
    servable = ArraysServable("tensorflow/serving/predict", {"outputs": np.zeros(1, np.float32)})
    req = request(regression_pb2.RegressionRequest, 1)
    tf_example.regress(servable, req)  # TF Serving 2.x default: structure only
    with pytest.raises(errors.InvalidArgument) as info:
        tf_example.regress(servable, req, check_method_name=True)
    assert info.value.message == (
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict"
    )


def test_context_is_merged_into_every_example() -> None:
    req = regression_pb2.RegressionRequest()
    with_context = req.input.example_list_with_context
    with_context.context.features.feature["c"].bytes_list.value.append(b"ctx")
    with_context.context.features.feature["x"].float_list.value.append(1.0)
    with_context.examples.add().features.feature["x"].float_list.value.append(2.0)
    with_context.examples.add()
    serialized = tf_example.serialized_examples(req.input)
    merged = [example_pb2.Example.FromString(s) for s in serialized]
    assert [e.features.feature["c"].bytes_list.value[0] for e in merged] == [b"ctx", b"ctx"]
    assert [e.features.feature["x"].float_list.value[0] for e in merged] == [2.0, 1.0]


def test_empty_or_unset_input_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match=r"^Input is empty\.$"):
        tf_example.serialized_examples(request(regression_pb2.RegressionRequest, 0).input)
    with pytest.raises(errors.InvalidArgument, match=r"^Input is empty\.$"):
        tf_example.serialized_examples(regression_pb2.RegressionRequest().input)


def test_plan_feeds_and_fetches_by_alias_and_finishes_like_a_direct_run() -> None:
    outputs = {
        "classes": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
        "scores": np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32),
    }
    servable = ArraysServable(tf_example.CLASSIFY_METHOD_NAME, outputs)
    req = request(classification_pb2.ClassificationRequest, 2)
    plan = tf_example.plan_classify(servable, req)
    assert plan.signature_key == "sig"
    assert list(plan.inputs) == ["inputs"]
    assert list(plan.inputs["inputs"]) == list(tf_example.serialized_examples(req.input))
    assert plan.output_aliases == ("classes", "scores")
    batched = plan.finish(outputs)  # what the batch scheduler hands back: by alias
    direct = plan.run(servable)
    assert batched.response == direct.response
    assert batched.num_examples == direct.num_examples == 2
    assert servable.fed[0] is plan.inputs["inputs"]


def test_regression_plan_fetches_its_single_output_alias() -> None:
    values = np.array([1.5, 2.5], np.float32)
    servable = ArraysServable(tf_example.REGRESS_METHOD_NAME, {"outputs": values})
    plan = tf_example.plan_regress(servable, request(regression_pb2.RegressionRequest, 2))
    assert plan.output_aliases == ("outputs",)
    reply = plan.finish({"outputs": values})
    assert [r.value for r in reply.response.result.regressions] == [1.5, 2.5]
