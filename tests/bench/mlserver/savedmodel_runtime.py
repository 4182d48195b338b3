"""A minimal MLServer runtime serving a TensorFlow SavedModel (the bench's peer).

Loaded by MLServer from its own virtualenv (build/bench/mlserver-venv), with that venv's
TensorFlow; nothing here imports servingd. The SavedModel runs the way servingd runs it
(a tf.compat.v1 Session, a callable over the signature's tensor names), so the comparison
measures the serving layers, not two TensorFlow APIs. Inputs and outputs are named by the
signature's aliases; the V2 codec is MLServer's NumpyCodec.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from tensorflow.core.protobuf import config_pb2


class SavedModelRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        path = self.settings.parameters.uri
        graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=graph)
        with graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        self._inputs = sorted(sig.inputs)
        self._dtypes = [tf.as_dtype(sig.inputs[a].dtype).as_numpy_dtype for a in self._inputs]
        self._outputs = sorted(sig.outputs)
        options = config_pb2.CallableOptions()
        options.feed.extend(sig.inputs[a].name for a in self._inputs)
        options.fetch.extend(sig.outputs[a].name for a in self._outputs)
        self._run = self._session._make_callable_from_options(options)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        by_name = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        feeds = [
            np.asarray(by_name[a], dtype=dtype)
            for a, dtype in zip(self._inputs, self._dtypes, strict=True)
        ]
        # TensorFlow releases the GIL: run it off the event loop, as servingd does.
        results: Any = await asyncio.get_running_loop().run_in_executor(None, self._run, *feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(name=a, payload=np.asarray(r))
                for a, r in zip(self._outputs, results, strict=True)
            ],
        )
