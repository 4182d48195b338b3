"""The edge model set (servingd.tools.edge_models): each export loads with servingd's own
SavedModelLoader and answers with its signature's shapes (tiny inputs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2

from servingd.core.ids import ServableId
from servingd.servables.saved_model import SavedModelLoader, SavedModelServable
from servingd.servables.tf_example import plan_classify
from servingd.tools import edge_models
from servingd.tools.export_models import EXPORTERS

pytestmark = pytest.mark.slow  # a Keras export takes seconds


def loaded(tmp_path: Path, exporter: Callable[[Path], Path]) -> Iterator[SavedModelServable]:
    loader = SavedModelLoader(ServableId("m", 1), str(exporter(tmp_path / "1")))
    loader.load()
    try:
        yield loader.servable()
    finally:
        loader.unload()


@pytest.fixture
def servable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SavedModelServable]:
    yield from loaded(tmp_path, EXPORTERS[request.param])


@pytest.mark.parametrize("servable", ["mobilenet_v2"], indirect=True)
def test_mobilenet_v2_takes_224x224_images(servable: SavedModelServable) -> None:
    images = np.random.default_rng(0).random((2, 224, 224, 3), np.float32)
    out = servable.run(servable.signature(), {"images": images})
    assert out["output_0"].shape == (2, 1000)
    np.testing.assert_allclose(out["output_0"].sum(axis=1), 1.0, rtol=1e-4)  # softmax


@pytest.mark.parametrize("servable", ["text_encoder"], indirect=True)
def test_text_encoder_takes_128_token_ids(servable: SavedModelServable) -> None:
    tokens = np.random.default_rng(0).integers(0, edge_models.VOCABULARY, (3, 128), np.int32)
    out = servable.run(servable.signature(), {"tokens": tokens})
    assert out["output_0"].shape == (3, 128)
    assert out["output_0"].dtype == np.float32
    with pytest.raises(Exception, match="128"):
        servable.run(servable.signature(), {"tokens": tokens[:, :64]}, strict_shapes=True)


@pytest.mark.parametrize("servable", ["tabular"], indirect=True)
def test_tabular_answers_classify_over_tf_examples(servable: SavedModelServable) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tabular"
    for i in range(3):
        request.input.example_list.examples.add().ParseFromString(edge_models.tabular_example(i))
    assert servable.signature().method_name == edge_models.CLASSIFY_METHOD_NAME
    response = plan_classify(servable, request).run(servable).response
    results = response.result.classifications
    assert len(results) == 3
    for result in results:
        assert [c.label for c in result.classes] == ["no", "yes"]
        assert sum(c.score for c in result.classes) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("servable", ["jpeg_classifier"], indirect=True)
def test_jpeg_classifier_decodes_jpeg_bytes_in_the_graph(servable: SavedModelServable) -> None:
    images = np.array([edge_models.sample_jpeg(0), edge_models.sample_jpeg(1, size=64)], object)
    out = servable.run(servable.signature(), {"image_bytes": images})
    assert out["scores"].shape == (2, edge_models.JPEG_CLASSES)
    with pytest.raises(Exception, match=r"(?i)jpeg|image"):
        servable.run(servable.signature(), {"image_bytes": np.array([b"not a jpeg"], object)})
