"""A PredictionService that answers every Predict and Classify with a canned reply (no
model): the bare grpc.aio server, make bench's transport ceiling.
    python -m tests.bench.echo_server --port N
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc


class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.reply = predict_pb2.PredictResponse()
        self.reply.outputs["probabilities"].float_val.extend([0.1] * 10)
        self.classification = classification_pb2.ClassificationResponse()
        self.classification.result.classifications.add().classes.add(label="1", score=0.5)

    async def Predict(self, request: Any, context: Any) -> Any:
        return self.reply

    async def Classify(self, request: Any, context: Any) -> Any:
        return self.classification


async def serve(port: int) -> None:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
