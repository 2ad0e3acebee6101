"""The model_ratings example application (examples/model_ratings): rate a certified model's
stories, read the scores, and let the model itself write the summary."""

from pathlib import Path

import pytest

from edgechain.errors import OperationRejected
from edgechain.testing.models import STORIES260K_GOLDEN

APP = Path(__file__).resolve().parent / "model_ratings"


def rate(model: str, stars: int, prompt: str = "Once upon a time", version: str = "1") -> dict:
    return {"Rate": {"model": model, "version": version, "prompt": prompt, "stars": stars}}


def test_owners_rate_certified_models_and_the_model_summarises(
    edgechain_application, publish_model, stories260k
):
    publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    app = edgechain_application(APP, parameters={"max_stars": 5})
    assert app.call(rate("stories260K", 4)) == {"count": 1, "stars": 4}
    assert app.call(rate("stories260K", 5, prompt="Lily")) == {"count": 2, "stars": 9}
    with pytest.raises(OperationRejected, match="not a certified, active model"):
        app.call(rate("no-such-model", 3))
    with pytest.raises(OperationRejected, match="stars must be in 1..5"):
        app.call(rate("stories260K", 6))
    data = app.query("{ scores { model version count averagePerMille } summary }")
    assert data["scores"] == [
        {"model": "stories260K", "version": "1", "count": 2, "averagePerMille": 4500}
    ]
    # The best-rated prompt ("Lily", 5 stars), continued greedily by the model itself.
    assert data["summary"].startswith("Lily") and len(data["summary"]) > 40
    again = app.query("{ summary }")["summary"]
    assert again == data["summary"]  # derived seed, greedy: the same on every query


def test_the_summary_is_run_c_text_for_the_golden_prompt(
    edgechain_application, publish_model, stories260k
):
    publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    app = edgechain_application(APP)
    app.call(rate("stories260K", 5))
    golden = (stories260k.directory / STORIES260K_GOLDEN).read_text(encoding="utf-8")
    assert golden.startswith(app.query("{ summary }")["summary"])
