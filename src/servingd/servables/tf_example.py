"""The tf.Example APIs (Classify, Regress, MultiInference) on a loaded servable, as TF Serving.

TF Serving's servables/tensorflow/{classifier,regressor,multi_inference,util}.cc, in numpy
terms: the request's ``Input`` becomes one 1-D string tensor of serialized
``tensorflow.Example`` protos (with ``ExampleListWithContext`` the context's bytes are
prepended to every example's bytes: protobuf merges concatenated messages, so each example
is the context with its own features on top), fed to the signature's single input; the
outputs are checked and built into ``ClassificationResult`` / ``RegressionResult``.

Signature rules (TF Serving 2.x): a classification signature has exactly one input named
``inputs`` and one or two outputs, ``classes`` (DT_STRING, [batch, num_classes]) and/or
``scores`` (DT_FLOAT, same shape); a regression signature has one input ``inputs`` and one
output ``outputs`` (DT_FLOAT, [batch] or [batch, 1]). The signature's ``method_name`` is
checked only with ``check_method_name`` (``--enable_signature_method_name_check``, off by
default in TF Serving so that native TF2 exports work). Messages and codes are TF Serving's.

``classify``/``regress``/``multi_inference`` run TensorFlow synchronously: call them on a
worker thread (model warmup calls them while loading). With ``timeout_s`` TensorFlow
cancels the run once it is over (see ``SavedModelServable.run``). The API front ends plan a
Classify or Regress first (``plan_classify``/``plan_regress``: checks and serialized
examples); the plan is a ``servables.servable.Call`` that the version starts: on a worker
thread, or through the batch scheduler when the model is batched.

"Task" is the batch scheduler's word (``BatchTask``) and the MultiInference proto's; a
signature checked for Classify or Regress here is a ``CheckedSignature``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servingd.core import errors
from servingd.servables.codecs import dtype_name, proto_enum_from_dtype
from servingd.servables.servable import BatchInput, Outputs, Servable
from servingd.servables.signature_constants import (
    CLASSIFY_INPUTS,
    CLASSIFY_METHOD_NAME,
    CLASSIFY_OUTPUT_CLASSES,
    CLASSIFY_OUTPUT_SCORES,
    DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    REGRESS_INPUTS,
    REGRESS_METHOD_NAME,
    REGRESS_OUTPUTS,
)
from servingd.wire.tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    regression_pb2,
)


@dataclass(frozen=True, slots=True)
class ExampleResponse:
    """A filled response proto and how many examples the request carried (for metrics)."""

    response: Any
    num_examples: int


@dataclass(frozen=True, slots=True)
class CheckedSignature:
    """One signature, checked: the tensor to feed and the tensors to fetch.

    ``input_alias`` and ``output_aliases`` are the signature's names of those tensors (the
    batch scheduler works with aliases, a direct run with tensor names).
    """

    key: str
    signature_def: Any
    input_alias: str
    input_tensor: str
    output_tensors: tuple[str, ...]
    output_aliases: tuple[str, ...]


# -- input --------------------------------------------------------------------------------


def serialized_examples(input_proto: Any) -> np.ndarray:
    """TF Serving's InputToSerializedExampleTensor: a 1-D object array of serialized Examples.

    Raises InvalidArgument("Input is empty.") when the Input holds no example (or no kind).
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise errors.InvalidArgument("Input is empty.")
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


# -- signatures ---------------------------------------------------------------------------


def _signature_key(signature_name: str) -> str:
    return signature_name or DEFAULT_SERVING_SIGNATURE_DEF_KEY


def _find_signature(servable: Servable, signature_name: str) -> tuple[str, Any]:
    key = _signature_key(signature_name)
    signatures = servable.meta_graph_def.signature_def
    if key not in signatures:
        raise errors.InvalidArgument(f"No signature was found with the name: {key}")
    return key, signatures[key]


def _debug_string(signature_def: Any) -> str:
    return str(signature_def)


def check_classification_signature(
    key: str, signature_def: Any, *, check_method_name: bool
) -> CheckedSignature:
    """TF Serving's PreProcessClassification."""
    if check_method_name and signature_def.method_name != CLASSIFY_METHOD_NAME:
        raise errors.InvalidArgument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD_NAME}. "
            f"Was: {signature_def.method_name}"
        )
    if len(signature_def.inputs) != 1:
        raise errors.InvalidArgument("Expected one input Tensor.")
    if len(signature_def.outputs) not in (1, 2):
        raise errors.InvalidArgument(
            f"Expected one or two output Tensors, found {len(signature_def.outputs)}"
        )
    if CLASSIFY_INPUTS not in signature_def.inputs:
        raise errors.InvalidArgument(
            f"No classification inputs found in SignatureDef: {_debug_string(signature_def)}"
        )
    outputs = signature_def.outputs
    if CLASSIFY_OUTPUT_CLASSES not in outputs and CLASSIFY_OUTPUT_SCORES not in outputs:
        raise errors.InvalidArgument(
            "Expected classification signature outputs to contain at least one of "
            f'"{CLASSIFY_OUTPUT_CLASSES}" or "{CLASSIFY_OUTPUT_SCORES}". Signature was: '
            f"{_debug_string(signature_def)}"
        )
    aliases = tuple(
        alias for alias in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES) if alias in outputs
    )
    return CheckedSignature(
        key,
        signature_def,
        CLASSIFY_INPUTS,
        signature_def.inputs[CLASSIFY_INPUTS].name,
        tuple(outputs[alias].name for alias in aliases),
        aliases,
    )


def check_regression_signature(
    key: str, signature_def: Any, *, check_method_name: bool
) -> CheckedSignature:
    """TF Serving's PreProcessRegression."""
    if check_method_name and signature_def.method_name != REGRESS_METHOD_NAME:
        raise errors.InvalidArgument(
            f"Expected regression signature method_name to be {REGRESS_METHOD_NAME}. "
            f"Was: {signature_def.method_name}"
        )
    if len(signature_def.inputs) != 1:
        raise errors.InvalidArgument("Expected one input Tensor.")
    if len(signature_def.outputs) != 1:
        raise errors.InvalidArgument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature_def.inputs:
        raise errors.InvalidArgument(
            f"No regression inputs found in SignatureDef: {_debug_string(signature_def)}"
        )
    if REGRESS_OUTPUTS not in signature_def.outputs:
        raise errors.InvalidArgument(
            f"No regression outputs found in SignatureDef: {_debug_string(signature_def)}"
        )
    return CheckedSignature(
        key,
        signature_def,
        REGRESS_INPUTS,
        signature_def.inputs[REGRESS_INPUTS].name,
        (signature_def.outputs[REGRESS_OUTPUTS].name,),
        (REGRESS_OUTPUTS,),
    )


# -- outputs ------------------------------------------------------------------------------


def _tf_dtype_name(array: np.ndarray) -> str:
    try:
        return dtype_name(proto_enum_from_dtype(array.dtype))
    except errors.ServingError:
        return array.dtype.name


def _shape_string(array: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _check_class_tensor(
    array: np.ndarray, what: str, want: str, num_examples: int, is_string: bool
) -> None:
    if array.ndim != 2:
        raise errors.InvalidArgument(
            f"Expected Tensor shape: [batch_size num_classes] but got {_shape_string(array)}"
        )
    if (array.dtype.kind not in "OS") if is_string else (array.dtype != np.float32):
        raise errors.InvalidArgument(
            f"Expected {what} Tensor of {want}. Got: {_tf_dtype_name(array)}"
        )
    if array.shape[0] != num_examples:
        raise errors.InvalidArgument(
            f"Expected {what} output batch size of {num_examples}. Got: {array.shape[0]}"
        )


def fill_classification_result(
    checked: CheckedSignature, num_examples: int, outputs: Mapping[str, np.ndarray], result: Any
) -> None:
    """TF Serving's PostProcessClassificationResult; ``outputs`` is keyed by tensor name."""
    sig_outputs = checked.signature_def.outputs
    classes = scores = None
    if CLASSIFY_OUTPUT_CLASSES in sig_outputs:
        classes = outputs.get(sig_outputs[CLASSIFY_OUTPUT_CLASSES].name)
    if CLASSIFY_OUTPUT_SCORES in sig_outputs:
        scores = outputs.get(sig_outputs[CLASSIFY_OUTPUT_SCORES].name)
    if classes is not None:
        _check_class_tensor(classes, "classes", "DT_STRING", num_examples, True)
    if scores is not None:
        _check_class_tensor(scores, "scores", "DT_FLOAT", num_examples, False)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise errors.InvalidArgument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )

    def num_classes_from(array: np.ndarray | None) -> int:
        return 0 if array is None else int(array.shape[1])

    for i in range(num_examples):
        classifications = result.classifications.add()
        num_classes = classes.shape[1] if classes is not None else num_classes_from(scores)
        for c in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[i, c]
                # `label` is a proto3 string: bytes that are not UTF-8 cannot travel in it.
                entry.label = (
                    label.decode("utf-8", errors="replace")
                    if isinstance(label, bytes)
                    else str(label)
                )
            if scores is not None:
                entry.score = float(scores[i, c])


def fill_regression_result(
    checked: CheckedSignature, num_examples: int, outputs: Mapping[str, np.ndarray], result: Any
) -> None:
    """TF Serving's PostProcessRegressionResult; ``outputs`` is keyed by tensor name."""
    name = checked.signature_def.outputs[REGRESS_OUTPUTS].name
    array = outputs.get(name)
    if array is None:
        raise errors.InvalidArgument(f"Could not find output tensor '{name}'")
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        raise errors.InvalidArgument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            f"got {_shape_string(array)}"
        )
    if array.shape[0] != num_examples:
        raise errors.InvalidArgument(
            f"Input batch size did not match output batch size: {num_examples} vs. {array.shape[0]}"
        )
    if array.dtype != np.float32:
        raise errors.InvalidArgument(
            f"Expected output Tensor of DT_FLOAT.  Got: {_tf_dtype_name(array)}"
        )
    for value in array.reshape(-1).tolist():
        result.regressions.add().value = value


# -- the three APIs -----------------------------------------------------------------------


def _fill_model_spec(spec: Any, name: str, signature_name: str, version: int) -> None:
    """TF Serving's MakeModelSpec: an empty signature name is reported as serving_default."""
    spec.name = name
    spec.signature_name = _signature_key(signature_name)
    spec.version.value = version


def _run(
    servable: Servable,
    examples: np.ndarray,
    task_inputs: Sequence[str],
    fetches: Sequence[str],
    timeout_s: float | None,
) -> dict[str, np.ndarray]:
    """Feeds the serialized examples to each of `task_inputs`; the fetched tensors by name."""
    arrays = servable.run_tensors(
        {name: examples for name in task_inputs}, fetches, timeout_s=timeout_s
    )
    return dict(zip(fetches, arrays, strict=True))


@dataclass(frozen=True, slots=True)
class ExamplePlan:
    """A checked Classify or Regress request: what to feed and fetch, and how to answer.

    Built on the version that will run it (``plan_classify`` / ``plan_regress``); a
    ``servables.servable.Call``. It runs either directly (``run``, tensor names, on a worker
    thread) or as one task of the batch scheduler: feed ``inputs`` to ``signature_key``
    (signature aliases), fetch ``output_aliases``, and build the response from those
    outputs with ``finish``. TF Serving batches these the same way: their Session::Run
    matches the signature's tensors.
    """

    checked: CheckedSignature
    examples: np.ndarray
    model_spec: Any
    version: int
    make_response: Callable[[], Any]
    fill_result: Callable[[Any, int, Mapping[str, np.ndarray], Any], None]

    @property
    def signature_key(self) -> str:
        return self.checked.key

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return {self.checked.input_alias: self.examples}

    @property
    def output_aliases(self) -> tuple[str, ...]:
        return self.checked.output_aliases

    def batch_input(self, servable: Servable) -> BatchInput:
        return BatchInput(servable.signature(self.checked.key), self.inputs, self.output_aliases)

    def run(self, servable: Servable, timeout_s: float | None = None) -> ExampleResponse:
        """Runs it in this thread (TensorFlow synchronously) and builds the response."""
        checked = self.checked
        outputs = _run(
            servable, self.examples, [checked.input_tensor], checked.output_tensors, timeout_s
        )
        return self._response(outputs)

    def finish(self, outputs: Outputs) -> ExampleResponse:
        """The response from outputs by signature alias (what a batched run returns)."""
        return self._response(
            {
                tensor: outputs[alias]
                for alias, tensor in zip(
                    self.checked.output_aliases, self.checked.output_tensors, strict=True
                )
            }
        )

    def _response(self, outputs_by_tensor: Mapping[str, np.ndarray]) -> ExampleResponse:
        num_examples = len(self.examples)
        response = self.make_response()
        _fill_model_spec(
            response.model_spec, self.model_spec.name, self.model_spec.signature_name, self.version
        )
        self.fill_result(self.checked, num_examples, outputs_by_tensor, response.result)
        return ExampleResponse(response, num_examples)


def plan_classify(
    servable: Servable, request: Any, *, check_method_name: bool = False
) -> ExamplePlan:
    """A ClassificationRequest checked against ``servable`` (TF Serving's RunClassify)."""
    return _plan_single_task(
        servable,
        request,
        check_classification_signature,
        classification_pb2.ClassificationResponse,
        fill_classification_result,
        check_method_name,
    )


def plan_regress(
    servable: Servable, request: Any, *, check_method_name: bool = False
) -> ExamplePlan:
    """A RegressionRequest checked against ``servable`` (TF Serving's RunRegress)."""
    return _plan_single_task(
        servable,
        request,
        check_regression_signature,
        regression_pb2.RegressionResponse,
        fill_regression_result,
        check_method_name,
    )


def classify(
    servable: Servable,
    request: Any,
    *,
    check_method_name: bool = False,
    timeout_s: float | None = None,
) -> ExampleResponse:
    """A ClassificationRequest -> ClassificationResponse, run in this thread."""
    plan = plan_classify(servable, request, check_method_name=check_method_name)
    return plan.run(servable, timeout_s)


def regress(
    servable: Servable,
    request: Any,
    *,
    check_method_name: bool = False,
    timeout_s: float | None = None,
) -> ExampleResponse:
    """A RegressionRequest -> RegressionResponse, run in this thread."""
    plan = plan_regress(servable, request, check_method_name=check_method_name)
    return plan.run(servable, timeout_s)


def _plan_single_task(
    servable: Servable,
    request: Any,
    check_signature: Callable[..., CheckedSignature],
    response_type: Callable[[], Any],
    fill_result: Callable[[Any, int, Mapping[str, np.ndarray], Any], None],
    check_method_name: bool,
) -> ExamplePlan:
    """Classify and Regress: one signature, one run, one result message."""
    key, signature_def = _find_signature(servable, request.model_spec.signature_name)
    checked = check_signature(key, signature_def, check_method_name=check_method_name)
    return ExamplePlan(
        checked,
        serialized_examples(request.input),
        request.model_spec,
        servable.id.version,
        response_type,
        fill_result,
    )


def multi_inference(
    servable: Servable,
    request: Any,
    *,
    check_method_name: bool = False,
    timeout_s: float | None = None,
) -> ExampleResponse:
    """A MultiInferenceRequest -> MultiInferenceResponse in one session run.

    TF Serving's rules: every task names the same (non-empty) model, each signature at most
    once, only classify/regress method names (else UNIMPLEMENTED). The request's examples
    are fed to every distinct input tensor of the signatures (current TF Serving; older
    releases refused signatures whose input tensors differ) and the union of their
    outputs is fetched, in one run.
    """
    model_name = ""
    seen: set[str] = set()
    checked: list[tuple[str, CheckedSignature]] = []
    for task_proto in request.tasks:
        spec = task_proto.model_spec
        if not spec.name:
            raise errors.InvalidArgument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = spec.name
        elif spec.name != model_name:
            raise errors.InvalidArgument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        key = _signature_key(spec.signature_name)
        if key in seen:
            raise errors.InvalidArgument(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        signature_def = servable.meta_graph_def.signature_def.get(key)
        if signature_def is None:
            raise errors.InvalidArgument(f"Requested signature not found in model graph: {key}")
        method = task_proto.method_name
        if method == CLASSIFY_METHOD_NAME:
            sig = check_classification_signature(
                key, signature_def, check_method_name=check_method_name
            )
        elif method == REGRESS_METHOD_NAME:
            sig = check_regression_signature(
                key, signature_def, check_method_name=check_method_name
            )
        else:
            raise errors.Unimplemented(f"Unsupported signature method_name: {method}")
        checked.append((method, sig))
    if not checked:
        # TF Serving looks the model up by an empty ModelSpec here, which fails.
        raise errors.InvalidArgument("MultiInferenceRequest has no tasks")
    fetches = sorted({name for _method, sig in checked for name in sig.output_tensors})
    examples = serialized_examples(request.input)
    num_examples = len(examples)
    inputs = sorted({sig.input_tensor for _method, sig in checked})
    outputs = _run(servable, examples, inputs, fetches, timeout_s)
    response = inference_pb2.MultiInferenceResponse()
    for (method, sig), task_proto in zip(checked, request.tasks, strict=True):
        result = response.results.add()
        if method == CLASSIFY_METHOD_NAME:
            fill_classification_result(sig, num_examples, outputs, result.classification_result)
        else:
            fill_regression_result(sig, num_examples, outputs, result.regression_result)
        _fill_model_spec(
            result.model_spec,
            task_proto.model_spec.name,
            task_proto.model_spec.signature_name,
            servable.id.version,
        )
    return ExampleResponse(response, num_examples)
