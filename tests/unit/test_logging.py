"""Logger flags each do what their name says, independently; secret-named fields are masked."""

from __future__ import annotations

import json
import logging

import pytest

from xtm_composer.config.settings import DebugSettings, LoggerSettings
from xtm_composer.observability import LOG_FILE_NAME, configure_logging, get_logger
from xtm_composer.orchestrators.specs import REDACTED, redacted_env


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    configure_logging(LoggerSettings())
    logging.getLogger().handlers.clear()


def emit(settings: LoggerSettings, tmp_path) -> None:
    configure_logging(settings, base_dir=tmp_path)
    log = get_logger("test.flags")
    log.debug("debug event", n=1)
    log.info("info event", token="should-not-appear", api_key="nor-this", key="OPENCTI_TOKEN")
    for handler in logging.getLogger().handlers:
        handler.flush()


@pytest.mark.parametrize("fmt", ["json", "pretty"])
@pytest.mark.parametrize("console", [True, False])
@pytest.mark.parametrize("directory", [False, True, "custom-dir"])
def test_console_directory_and_format_are_independent(capsys, tmp_path, fmt, console, directory):
    emit(LoggerSettings(level="info", format=fmt, console=console, directory=directory), tmp_path)
    out = capsys.readouterr().out
    file_dir = {False: None, True: tmp_path / "logs", "custom-dir": tmp_path / "custom-dir"}[directory]
    file_text = (file_dir / LOG_FILE_NAME).read_text() if file_dir else ""
    if file_dir is None:
        assert not (tmp_path / "logs").exists()
    assert ("info event" in out) is console
    assert ("info event" in file_text) is (file_dir is not None)
    for text in filter(None, [out, file_text]):
        line = next(line for line in text.splitlines() if "info event" in line)
        if fmt == "json":
            record = json.loads(line)
            assert record["event"] == "info event" and record["level"] == "info"
        else:
            with pytest.raises(ValueError):
                json.loads(line)
        assert "should-not-appear" not in text and "nor-this" not in text and "OPENCTI_TOKEN" in text


@pytest.mark.parametrize(("level", "debug_shown"), [("debug", True), ("info", False), ("error", False)])
def test_level_filters(capsys, tmp_path, level, debug_shown):
    emit(LoggerSettings(level=level, console=True), tmp_path)
    out = capsys.readouterr().out
    assert ("debug event" in out) is debug_shown
    assert ("info event" in out) is (level in ("debug", "info"))


def test_show_env_vars_masks_sensitive_values_unless_explicitly_asked():
    env = [("PLAIN", "v"), ("FROM_SECRET", "s3cr3t"), ("OPENCTI_TOKEN", "tok"), ("HASH", "h")]
    masked = redacted_env(env, {"FROM_SECRET"}, show_sensitive=False)
    assert masked == {"PLAIN": "v", "FROM_SECRET": REDACTED, "OPENCTI_TOKEN": REDACTED, "HASH": "h"}
    assert redacted_env(env, {"FROM_SECRET"}, show_sensitive=True)["FROM_SECRET"] == "s3cr3t"
    assert DebugSettings().show_env_vars is False and DebugSettings().show_sensitive_env_vars is False


def test_log_files_roll_daily_and_keep_five(tmp_path):
    import logging.handlers

    configure_logging(LoggerSettings(console=False, directory=True), base_dir=tmp_path)
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.TimedRotatingFileHandler)]
    assert handler.when == "MIDNIGHT" and handler.backupCount == 5
