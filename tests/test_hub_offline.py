"""Without the Hub, a Hub id fails at once with one line (diffusers and huggingface_hub retried
for 30-60 s, then blamed a missing config.json)."""

import socket
import time

import pytest

from uir.hub import hub_reachable, require_hub
from uir.pipelines.loading import load_pipeline


@pytest.fixture()
def closed_endpoint(monkeypatch):
    """The Hub endpoint is a local port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_an_unreachable_hub_is_told_within_a_second(closed_endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    assert not hub_reachable()
    for call in (lambda: load_pipeline("someone/uir-model"), lambda: load_pipeline(experts=["someone/uir-noisy"]),
                 lambda: load_pipeline(router="someone/uir-router")):
        with pytest.raises(OSError, match="cannot reach the Hub .* for (model|expert|router) someone/"):
            call()
    assert time.perf_counter() - start < 6  # four probes of at most 1.25 s


def test_offline_mode_is_told_at_once_and_a_local_folder_is_never_asked(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
        require_hub("stabilityai/sd-turbo")
    (tmp_path / "stabilityai" / "sd-turbo").mkdir(parents=True)
    require_hub("stabilityai/sd-turbo")  # a folder of that name is used as it is
    assert time.perf_counter() - start < 0.5


def test_open_clip_tags_are_checked_too(closed_endpoint):
    from uir.models.router import DegradationRouter

    with pytest.raises(OSError, match="cannot reach the Hub .* for open_clip weights"):
        DegradationRouter.from_open_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="unknown pretrained tag"):
        DegradationRouter.from_open_clip("ViT-B-32", pretrained="no-such-tag")
