"""Command line: the only composition root. It loads settings and keys, builds the platform
clients and orchestrators, and starts the daemon (or the emulator, the demo …)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from xtm_composer import __version__
from xtm_composer.config import Settings, load_settings
from xtm_composer.domain import PlatformKind
from xtm_composer.errors import ComposerError, ConfigurationError
from xtm_composer.observability import configure_logging, get_logger

app = typer.Typer(
    name="xtm-composer",
    help="Runs the connectors of OpenCTI (and OpenAEV) on Docker, and reports back to the platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = get_logger("xtm_composer.cli")


def fail(message: str, *, code: int = 2) -> NoReturn:
    """One line on stderr, no traceback, non-zero exit."""
    typer.echo(f"xtm-composer: error: {message}", err=True)
    raise typer.Exit(code)


ConfigDir = Annotated[
    Path | None,
    typer.Option("--config-dir", help="Directory holding default.yaml and <COMPOSER_ENV>.yaml (default: ./config)."),
]


def _load(config_dir: Path | None) -> Settings:
    try:
        return load_settings(config_dir)
    except ConfigurationError as exc:
        fail(str(exc))


@app.command()
def run(config_dir: ConfigDir = None) -> None:
    """Run the composer: register with the platform(s) and reconcile connectors until stopped."""
    from xtm_composer.telemetry import Telemetry
    from xtm_composer.wiring import build_runtimes

    settings = _load(config_dir)
    try:
        configure_logging(settings.manager.logger)
        telemetry = Telemetry(
            manager_id=settings.manager.id, alerts=settings.manager.alerts, audit=settings.manager.audit
        )
        runtimes = build_runtimes(settings, telemetry=telemetry)
    except ComposerError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"manager.audit.path: {exc.strerror or exc}")
    log.info("xtm-composer starting", version=__version__, platforms=[r.kind.value for r in runtimes])
    try:
        exit_code = asyncio.run(_serve(runtimes, telemetry, settings))
    except ComposerError as exc:
        fail(str(exc))
    _exit_now_if_engine_calls_hang(exit_code)
    raise typer.Exit(exit_code)


def _exit_now_if_engine_calls_hang(exit_code: int) -> None:
    """Engine SDK calls cannot be cancelled; one stuck on a hung engine would keep the process alive
    until its own timeout. Everything is already closed and logged: leave now."""
    import logging
    import os
    import threading

    from xtm_composer.daemon import ENGINE_THREAD_PREFIX

    stuck = [t for t in threading.enumerate() if t.name.startswith(ENGINE_THREAD_PREFIX)]
    for thread in stuck:
        thread.join(timeout=0.2)  # idle workers leave at once; only a blocked call stays
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        log.warning("exiting with engine calls still in flight", threads=len(stuck))
        logging.shutdown()
        os._exit(exit_code)


async def _serve(runtimes: list, telemetry, settings: Settings) -> int:  # type: ignore[no-untyped-def, type-arg]
    from xtm_composer.daemon import run_daemon

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_daemon(runtimes, stop, telemetry=telemetry, monitoring=settings.manager.monitoring)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("xtm-composer stopped")
    return 0


@app.command()
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the new PKCS#8 PEM private key.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a new RSA-4096 private key (PKCS#8 PEM, mode 0600) for manager.credentials_key_filepath."""
    from xtm_composer.keys import write_new_key

    try:
        write_new_key(path, overwrite=force)
    except ComposerError as exc:
        fail(str(exc))
    typer.echo(f"wrote a 4096-bit RSA private key to {path} (mode 0600)")


@app.command()
def demo(
    duration: Annotated[float, typer.Option("--duration", help="Stop after this many seconds (0: until Ctrl-C).")] = 0,
    story: Annotated[bool, typer.Option("--story/--no-story", help="Play admin actions while it runs.")] = True,
    openaev: Annotated[bool, typer.Option("--openaev/--no-openaev", help="Run OpenAEV collectors too.")] = True,
) -> None:
    """Run the composer against a seeded platform emulator on the local Docker Engine, with a live table."""
    from xtm_composer.demo import run_demo

    try:
        run_demo(duration=duration, story=story, with_openaev=openaev)
    except ComposerError as exc:
        fail(str(exc), code=1)


def _read_only(config_dir: Path | None, view) -> None:  # type: ignore[no-untyped-def]
    """Build the runtimes without starting loops, run one read-only view, close everything."""
    from rich.console import Console

    from xtm_composer.config.settings import LoggerSettings
    from xtm_composer.wiring import build_runtimes

    settings = _load(config_dir)
    configure_logging(LoggerSettings(level="error", console=False))
    try:
        runtimes = build_runtimes(settings)
    except ComposerError as exc:
        fail(str(exc))

    async def go() -> None:
        try:
            await view(runtimes, Console())
        finally:
            for runtime in runtimes:
                await runtime.close()

    try:
        asyncio.run(go())
    except ComposerError as exc:
        fail(str(exc), code=1)


@app.command()
def plan(config_dir: ConfigDir = None) -> None:
    """One dry pass: print the actions the composer would take now. Changes nothing."""
    from xtm_composer.views import show_plan

    _read_only(config_dir, show_plan)


@app.command()
def status(config_dir: ConfigDir = None) -> None:
    """Table of connectors: requested and current status, workload, restarts, uptime, reboot loop, last error."""
    from xtm_composer.views import show_status

    _read_only(config_dir, show_status)


@app.command()
def check(config_dir: ConfigDir = None) -> None:
    """Check configuration, key, platform and orchestrator; print the fix for each failure. Changes nothing."""
    from xtm_composer.config.settings import LoggerSettings
    from xtm_composer.doctor import print_report, run_checks

    configure_logging(LoggerSettings(console=False))  # the report says it all; log lines would repeat it
    ok = print_report(run_checks(config_dir), typer.echo)
    raise typer.Exit(0 if ok else 1)


keys_app = typer.Typer(help="Manage the composer's private keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate(config_dir: ConfigDir = None) -> None:
    """Replace the key file by a new RSA-4096 key; the old one is kept (in <key file>.previous/) to decrypt
    values saved before. A running composer registers the new public key at its next ping."""
    from xtm_composer.keys import rotate_key

    settings = _load(config_dir)
    path = settings.manager.credentials_key_filepath
    if path is None:
        fail("keys rotate needs manager.credentials_key_filepath (inline and PKCS#11 keys are rotated by their owner)")
    try:
        kept = rotate_key(path)
    except ComposerError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot rotate {path}: {exc.strerror or exc}")
    typer.echo(f"new key written to {path}; the previous key is kept as {kept}")
    typer.echo(
        "values saved on the platforms before now stay encrypted under the previous key: keep it until "
        "`xtm-composer check` reports that no value needs it"
    )


@app.command()
def version() -> None:
    """Print the composer version."""
    typer.echo(__version__)


def _mount_subcommands() -> None:
    from xtm_composer.emulator.cli import app as emulator_app

    app.add_typer(emulator_app, name="emulator", help="Run or drive the OpenCTI platform emulator.")


def main() -> None:
    _mount_subcommands()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["PlatformKind", "app", "main"]
