"""Logging set-up: one structlog pipeline for our events and for third-party stdlib logs.

`logger.console` sends lines to stdout, `logger.directory` to a daily-rolling file (5 kept),
`logger.format` picks JSON or a human console rendering, `logger.level` filters: four independent
flags. A redaction processor masks fields whose name says they hold a secret, as a safety net —
the code itself never passes secret values to a log call.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import Any

import structlog

from xtm_composer.config.settings import LoggerSettings
from xtm_composer.errors import ConfigurationError

REDACTED = "***REDACTED***"
_SECRET_FIELD = re.compile(r"(^|_)(token|password|passwd|secret|api_key|private_key|credentials?_key)$", re.I)
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LOG_FILE_NAME = "xtm-composer.log"
LOG_FILES_KEPT = 5


def redact_secret_fields(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for field in list(event_dict):
        if _SECRET_FIELD.search(field) and event_dict[field] not in (None, ""):
            event_dict[field] = REDACTED
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secret_fields,
    ]


def configure_logging(settings: LoggerSettings, *, base_dir: Path | None = None) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handlers: list[logging.Handler] = []
    if settings.console:
        handlers.append(logging.StreamHandler(sys.stdout))
    directory = log_directory(settings, base_dir=base_dir)
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.TimedRotatingFileHandler(
                    directory / LOG_FILE_NAME, when="midnight", backupCount=LOG_FILES_KEPT, utc=True, encoding="utf-8"
                )
            )
        except OSError as exc:
            raise ConfigurationError(
                f"manager.logger.directory: cannot write logs in {directory}: {exc.strerror or exc}"
            ) from None
    if not handlers:
        handlers.append(logging.NullHandler())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(_LEVELS[settings.level])
    # Chatty libraries stay at warning unless we debug.
    for noisy in ("httpx", "httpcore", "urllib3", "docker", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if settings.level in ("trace", "debug") else logging.WARNING)
    structlog.configure(
        # Events below the level are dropped first, before any processor spends time on them.
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def log_directory(settings: LoggerSettings, *, base_dir: Path | None = None) -> Path | None:
    if settings.directory is False or settings.directory == "":
        return None
    directory = Path("logs") if settings.directory is True else Path(settings.directory)
    return directory if directory.is_absolute() or base_dir is None else base_dir / directory


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
