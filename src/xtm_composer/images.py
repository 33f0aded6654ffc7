"""Offline container images built from the host's static busybox.

Tests and the demo need images on engines that can reach no registry. Each image is a one-layer
rootfs holding ``/bin/busybox`` and its applet links, imported through the Engine API (like
``docker import``), so neither the docker CLI nor a network is needed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import docker
import docker.errors

BUSYBOX_IMAGE = "local/busybox:1"
DEMO_IMAGE = "xtm-composer/demo-connector:1"

# Label holding a digest of everything an image is built from: ensure_image rebuilds when it differs,
# so an edited demo script never runs from a stale image kept in an engine's data root.
CONTENT_LABEL = "io.filigran.xtm-composer.content"

_PT_INTERP = 3
_FIXED_MTIME = 1_700_000_000  # fixed timestamps keep the layer identical from build to build

_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnobody:x:65534:\n"

# A connector look-alike: logs like OpenCTI's Python connectors (JSON lines), never prints env values,
# stops at once on SIGTERM/SIGINT, and crashes on demand to produce reboot loops.
DEMO_CONNECTOR_SCRIPT = r"""#!/bin/sh
name="${CONNECTOR_NAME:-demo-connector}"
ctype="${CONNECTOR_TYPE:-EXTERNAL_IMPORT}"
interval="${DEMO_INTERVAL:-2}"
sleeper=""

stop() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    log info "Connector stopping"
    exit 0
}
trap stop TERM INT

json_escape() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\n\r'
}

log() {
    printf '{"timestamp": "%s", "level": "%s", "name": "%s", "message": "%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$(json_escape "$name")" "$(json_escape "$2")"
}

if [ "${DEMO_CRASH:-0}" = "1" ]; then
    log error "Connector crashed on start (DEMO_CRASH=1)"
    exit 1
fi

# Names only: values may be tokens. Newlines inside values become spaces before NULs become line
# breaks, so no fragment of a value can pass for a name.
names="$(tr '\n\0' ' \n' < /proc/$$/environ | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' \
    | sort | tr '\n' ',' | sed 's/,$//')"
log info "Starting connector $name (type $ctype) with environment variables: $names"

pause() {
    sleep "$interval" &
    sleeper=$!
    wait "$sleeper"
    sleeper=""
}

pause
log info "Connector registered${CONNECTOR_ID:+ with ID $CONNECTOR_ID}"
iteration=0
while :; do
    iteration=$((iteration + 1))
    pause
    log info "Fetching new data (iteration $iteration)"
    pause
    log info "Sending bundle with $((iteration * 7 % 40 + 3)) objects"
    pause
    log info "Iteration done, next run in ${interval}s"
done
"""


class BusyboxError(RuntimeError):
    """The host has no usable static busybox."""


def _has_interpreter(binary: bytes) -> bool:
    """True if an ELF file asks for a dynamic loader (PT_INTERP), i.e. would not run in an empty rootfs.

    Only PT_INTERP matters: static-pie binaries carry a dynamic section yet need no loader.
    """
    if binary[:4] != b"\x7fELF" or len(binary) < 64:
        raise BusyboxError("busybox-static is required: busybox is not an ELF executable")
    is_64 = binary[4] == 2
    endian = "<" if binary[5] == 1 else ">"
    if is_64:
        (phoff,) = struct.unpack_from(endian + "Q", binary, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", binary, 0x36)
    else:
        (phoff,) = struct.unpack_from(endian + "I", binary, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", binary, 0x2A)
    for i in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", binary, phoff + i * phentsize)
        if p_type == _PT_INTERP:
            return True
    return False


def find_busybox() -> Path:
    found = shutil.which("busybox")
    for candidate in (found, "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise BusyboxError("busybox-static is required: no busybox found (Debian: apt-get install busybox-static)")


@functools.lru_cache(maxsize=1)
def _busybox() -> tuple[bytes, tuple[str, ...]]:
    """The static busybox binary and its applet names."""
    path = find_busybox()
    binary = path.read_bytes()
    if _has_interpreter(binary):
        raise BusyboxError(
            f"busybox-static is required: {path} is dynamically linked (Debian: apt-get install busybox-static)"
        )
    listing = subprocess.run([str(path), "--list"], capture_output=True, text=True, check=True, timeout=10)
    applets = tuple(sorted({a.strip() for a in listing.stdout.split() if a.strip() and "/" not in a}))
    return binary, applets


def _add(
    tar: tarfile.TarFile,
    name: str,
    *,
    mode: int,
    data: bytes | None = None,
    kind: bytes = tarfile.REGTYPE,
    target: str = "",
) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = _FIXED_MTIME
    info.type = kind
    info.linkname = target
    if data is None:
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _rootfs(extra_files: dict[str, tuple[bytes, int]]) -> bytes:
    binary, applets = _busybox()
    files: dict[str, tuple[bytes, int]] = {
        "etc/passwd": (_PASSWD, 0o644),
        "etc/group": (_GROUP, 0o644),
    }
    for path, (content, mode) in extra_files.items():
        files[str(PurePosixPath(path.lstrip("/")))] = (content, mode)

    dirs = {"bin": 0o755, "etc": 0o755, "root": 0o700, "tmp": 0o1777, "dev": 0o755, "proc": 0o555, "sys": 0o555}
    for path in files:
        for parent in PurePosixPath(path).parents:
            if str(parent) != ".":
                dirs.setdefault(str(parent), 0o755)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs, key=lambda p: (p.count("/"), p)):
            _add(tar, d, mode=dirs[d], kind=tarfile.DIRTYPE)
        _add(tar, "bin/busybox", mode=0o755, data=binary)
        for applet in applets:
            if applet != "busybox" and f"bin/{applet}" not in files:
                _add(tar, f"bin/{applet}", mode=0o777, kind=tarfile.SYMTYPE, target="busybox")
        for path, (content, mode) in sorted(files.items()):
            _add(tar, path, mode=mode, data=content)
    return buf.getvalue()


def _env_value(value: str) -> str:
    """Quote a value for a Dockerfile ENV line: ENV expands `$` and unescapes backslashes and quotes."""
    if "\n" in value or "\r" in value:
        raise ValueError("image ENV values cannot contain line breaks")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def split_ref(ref: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag); a colon before the last slash belongs to a registry port."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def _prepare(
    extra_files: dict[str, tuple[bytes, int]] | None, cmd: list[str] | None, env: dict[str, str] | None
) -> tuple[bytes, list[str], str]:
    """Rootfs tar, `docker import` changes and the content digest they amount to."""
    env = dict(env or {})
    env.setdefault("PATH", "/bin")
    cmd = cmd or ["/bin/sh"]
    rootfs = _rootfs(extra_files or {})
    digest = hashlib.sha256(rootfs)
    digest.update(json.dumps({"cmd": cmd, "env": env}, sort_keys=True).encode())
    content = digest.hexdigest()[:16]
    changes = [f"ENV {key}={_env_value(value)}" for key, value in sorted(env.items())]
    changes += [f"CMD {json.dumps(cmd)}", f"LABEL {CONTENT_LABEL}={content}"]
    return rootfs, changes, content


def _import(client: docker.DockerClient, repository: str, tag: str, rootfs: bytes, changes: list[str]) -> str:
    answer = client.api.import_image_from_data(rootfs, repository=repository, tag=tag, changes=changes)
    # The answer is a stream of JSON lines; a failed import may still come back as HTTP 200.
    for line in str(answer).splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("error"):
            raise docker.errors.APIError(f"import of {repository}:{tag} failed: {item['error']}")
    image_id: str = client.images.get(f"{repository}:{tag}").id
    return image_id


def build_busybox_image(
    client: docker.DockerClient,
    repository: str,
    tag: str,
    *,
    extra_files: dict[str, tuple[bytes, int]] | None = None,
    cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Import a busybox rootfs (plus `extra_files`: path -> (content, mode)) as `repository:tag`.

    Returns the image id. `cmd` defaults to `/bin/sh`; `PATH=/bin` unless `env` sets it.
    """
    rootfs, changes, _ = _prepare(extra_files, cmd, env)
    return _import(client, repository, tag, rootfs, changes)


def ensure_image(
    client: docker.DockerClient,
    ref: str = BUSYBOX_IMAGE,
    *,
    extra_files: dict[str, tuple[bytes, int]] | None = None,
    cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Image id of `ref`, building it first if missing or built from other content."""
    rootfs, changes, content = _prepare(extra_files, cmd, env)
    old = None
    try:
        old = client.images.get(ref)
    except docker.errors.ImageNotFound:
        pass
    else:
        labels = (old.attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(CONTENT_LABEL) == content:
            image_id: str = old.id
            return image_id
    repository, tag = split_ref(ref)
    image_id = _import(client, repository, tag, rootfs, changes)
    if old is not None:
        _remove_if_dangling(client, old.id)
    return image_id


def _remove_if_dangling(client: docker.DockerClient, image_id: str) -> None:
    """Drop an image a rebuild left without any name, so rebuilds do not pile up in the engine."""
    try:
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)
    except docker.errors.APIError:
        pass  # still used by a container, or already gone: harmless either way


def tag_image(client: docker.DockerClient, source_ref: str, target_ref: str) -> str:
    """Give `source_ref` the name `target_ref` (as `docker tag`); returns the image id."""
    image = client.images.get(source_ref)
    repository, tag = split_ref(target_ref)
    if not image.tag(repository, tag):
        raise docker.errors.APIError(f"could not tag {source_ref} as {target_ref}")
    image_id: str = image.id
    return image_id


def ensure_demo_image(client: docker.DockerClient, ref: str = DEMO_IMAGE) -> str:
    """The demo connector image: busybox plus `/bin/demo-connector` as its command."""
    return ensure_image(
        client,
        ref,
        extra_files={"bin/demo-connector": (DEMO_CONNECTOR_SCRIPT.encode(), 0o755)},
        cmd=["/bin/demo-connector"],
    )
