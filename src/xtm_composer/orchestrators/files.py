"""Files given to containers through read-only bind mounts (the proxy CA bundle).

The engine needs a path on its host, so the composer writes each file once, named after its
content, under `manager.data_directory`. When the composer itself runs in a container, that
directory must be a volume shared with the host at the same path.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from xtm_composer.domain import MountedFile
from xtm_composer.errors import InvalidWorkloadSpec


def default_data_directory() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/xtm-composer")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "xtm-composer"


class MountedFileStore:
    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    def materialise(self, files: tuple[MountedFile, ...]) -> dict[str, Path]:
        """Host paths holding each file's content (written atomically, only when missing)."""
        if not files:
            return {}
        directory = (self._directory or default_data_directory()) / "files"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidWorkloadSpec(f"cannot create {directory} for mounted files: {exc.strerror}") from None
        sources: dict[str, Path] = {}
        for mounted in files:
            data = mounted.content.encode("utf-8")
            target = directory / f"{hashlib.sha256(data).hexdigest()[:24]}{Path(mounted.path).suffix}"
            if not target.exists():
                fd, temporary = tempfile.mkstemp(dir=directory)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.chmod(temporary, 0o644)  # certificates are public; the container user must read them
                os.replace(temporary, target)
            sources[mounted.path] = target
        return sources
