"""`xtm-composer emulator ...`: run the platform emulator and drive a running one from the shell.

`serve` runs it in the foreground; the other commands talk to its admin API (`--url`, `--token`).
`K=V` arguments are split on the first `=` only, so values may contain `=`. Every error prints
one line on stderr and exits non-zero.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from xtm_composer.emulator.client import EmulatorAdmin, EmulatorAdminError
from xtm_composer.emulator.errors import EmulatorError
from xtm_composer.emulator.seed import DEFAULT_DEMO_IMAGE, seed_demo
from xtm_composer.emulator.server import serve_forever
from xtm_composer.emulator.state import DEFAULT_TOKEN, DEFAULT_VERSION, EmulatorState

DEFAULT_URL = "http://127.0.0.1:4000"
TOKEN_ENV = "XTM_EMULATOR_TOKEN"

app = typer.Typer(
    help="OpenCTI platform emulator: serve it, or manage the connectors of a running one.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

UrlOption = Annotated[str, typer.Option("--url", help="Base URL of the running emulator.")]
TokenOption = Annotated[str, typer.Option("--token", envvar=TOKEN_ENV, help="The emulator's API token.")]
PairsOption = Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """`KEY=VALUE` items to a dict, split on the first `=` only (values may contain `=`)."""
    parsed: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"{option} expects KEY=VALUE, got {pair!r}", code=2)
        parsed[key.strip()] = value
    return parsed


def _admin_call(url: str, token: str, action: str, *args: Any, **kwargs: Any) -> Any:
    with EmulatorAdmin(url, token) as admin:
        try:
            return getattr(admin, action)(*args, **kwargs)
        except EmulatorAdminError as exc:
            fail(str(exc))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 4000,
    token: TokenOption = DEFAULT_TOKEN,
    platform_version: Annotated[str, typer.Option(help="Version answered by `about`.")] = DEFAULT_VERSION,
    encryption: Annotated[
        int, typer.Option(min=1, max=2, help="Secret format: 1 = RSA PKCS#1 v1.5 (6.8/6.9), 2 = RSA-OAEP (7.x).")
    ] = 1,
    seed: Annotated[bool, typer.Option("--seed/--no-seed", help="Add the demo connectors.")] = False,
    image: Annotated[str, typer.Option(help="Image of the seeded connectors.")] = DEFAULT_DEMO_IMAGE,
    public_url: Annotated[
        str | None, typer.Option(help="OPENCTI_URL served to connectors (default: the listen address).")
    ] = None,
    kind: Annotated[
        str, typer.Option(help="Platform to emulate: opencti (GraphQL) or openaev (REST under /api).")
    ] = "opencti",
) -> None:
    """Run the emulator in the foreground until interrupted."""
    try:
        state = EmulatorState(
            token=token, version=platform_version, encryption_version=encryption, public_url=public_url, kind=kind
        )
        seeded = seed_demo(state, image=image) if seed else []
    except EmulatorError as exc:
        fail(exc.message)
    where = f"http://{host}:{port}/graphql" if kind == "opencti" else f"http://{host}:{port}/api"
    typer.echo(
        f"{'OpenCTI' if kind == 'opencti' else 'OpenAEV'} emulator {platform_version} (secrets v{encryption}) "
        f"on {where}, {len(seeded)} connector(s) seeded"
    )
    try:
        serve_forever(state, host=host, port=port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@app.command()
def add(
    name: Annotated[str, typer.Option(help="Connector name (unique).")],
    image: Annotated[str, typer.Option(help="Container image.")],
    config: PairsOption = None,
    secret: PairsOption = None,
    connector_type: Annotated[str | None, typer.Option("--type", help="Connector type.")] = None,
    start: Annotated[bool, typer.Option("--start", help="Request it to start.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """Add a managed connector; prints its id."""
    config_values = parse_pairs(config, "--config")
    secret_values = parse_pairs(secret, "--secret")
    created = _admin_call(
        url, token, "add_connector", name, image,
        config=config_values, secrets=secret_values, type=connector_type, start=start,
    )  # fmt: skip
    typer.echo(created["id"])


@app.command("list")
def list_connectors(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """List the managed connectors with their requested and current status."""
    connectors = _admin_call(url, token, "list")
    if as_json:
        typer.echo(json.dumps(connectors, indent=2))
        return
    table = Table("ID", "NAME", "IMAGE", "REQUESTED", "CURRENT", "HASH", "HEALTH")
    for c in connectors:
        health = c["health"]
        health_text = "-" if health is None else f"restarts={health['restart_count']}"
        if health and health["is_in_reboot_loop"]:
            health_text += " reboot-loop"
        table.add_row(
            c["id"], c["name"], c["image"], c["requested_status"], c["current_status"] or "-",
            c["hash"][:12], health_text,
        )  # fmt: skip
    Console(width=200).print(table)


@app.command()
def start(
    connector_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """Request a connector to start."""
    connector = _admin_call(url, token, "start", connector_id)
    typer.echo(f"{connector['name']}: requested {connector['requested_status']}")


@app.command()
def stop(
    connector_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """Request a connector to stop."""
    connector = _admin_call(url, token, "stop", connector_id)
    typer.echo(f"{connector['name']}: requested {connector['requested_status']}")


@app.command()
def reset(
    connector_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """Reset a connector's state (its contract hash changes)."""
    connector = _admin_call(url, token, "reset", connector_id)
    typer.echo(f"{connector['name']}: hash {connector['hash']}")


@app.command()
def edit(
    connector_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    image: Annotated[str | None, typer.Option(help="New image.")] = None,
    config: PairsOption = None,
    secret: PairsOption = None,
    unset: Annotated[list[str] | None, typer.Option(metavar="KEY", help="Remove a key.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """Change a connector's name, image or configuration (the contract hash follows)."""
    config_values: dict[str, str | None] = dict(parse_pairs(config, "--config"))
    secret_values = parse_pairs(secret, "--secret")
    for key in unset or []:
        config_values[key] = None
    if not (name or image or config_values or secret_values):
        fail("nothing to change: give --name, --image, --config, --secret or --unset", code=2)
    connector = _admin_call(
        url, token, "edit", connector_id,
        name=name, image=image, config=config_values or None, secrets=secret_values or None,
    )  # fmt: skip
    typer.echo(f"{connector['name']}: hash {connector['hash']}")


@app.command()
def delete(
    connector_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = DEFAULT_TOKEN,
) -> None:
    """Delete a connector."""
    _admin_call(url, token, "delete", connector_id)
    typer.echo(f"deleted {connector_id}")
