"""A pull that fails inside a 200 stream is an ImagePullError, with registry credentials passed.

No registry can be reached here, so the engine's streamed answer is played by a docker-py
APIClient whose `pull` yields what the Engine API streams; everything else is the real code.
"""

from __future__ import annotations

import docker
import docker.errors
import pytest

from xtm_composer.config.settings import RegistrySettings
from xtm_composer.domain import WorkloadSpec
from xtm_composer.errors import ImagePullError
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator


class StreamingEngine(docker.APIClient):
    """The Engine API's answers for an image that is missing and whose pull fails mid-stream."""

    def __init__(self) -> None:
        super().__init__(base_url="unix:///nonexistent.sock", version="1.44")
        self.pulls: list[tuple[str, str | None, dict | None]] = []

    def inspect_image(self, image):  # type: ignore[override]
        raise docker.errors.ImageNotFound(f"No such image: {image}")

    def pull(self, repository, tag=None, stream=False, auth_config=None, decode=False, **kwargs):  # type: ignore[override]
        self.pulls.append((repository, tag, auth_config))
        yield {"status": "Pulling from opencti/connector-x", "id": "6.8.3"}
        yield {"status": "Downloading", "progressDetail": {"current": 1, "total": 2}}
        yield {
            "errorDetail": {"message": "unauthorized: authentication required"},
            "error": "unauthorized: authentication required",
        }


async def test_an_error_inside_the_pull_stream_is_an_image_pull_error_with_credentials_passed():
    engine = StreamingEngine()
    orchestrator = DockerOrchestrator(
        registry=RegistrySettings(server="r.example.com", username="u", password="p"), client_factory=lambda: engine
    )
    spec = WorkloadSpec(name="x", image="opencti/connector-x:6.8.3", env=(), labels={}, config_hash="h")
    with pytest.raises(ImagePullError, match="unauthorized"):
        await orchestrator.deploy(spec, start=True)
    ((repository, tag, auth),) = engine.pulls
    assert (repository, tag) == ("r.example.com/opencti/connector-x", "6.8.3")
    assert auth == {"username": "u", "password": "p", "serveraddress": "r.example.com"}
