"""Shared fixtures: build an app from YAML text and talk to it through werkzeug's client."""

from __future__ import annotations

import io
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.test import Client

sys.path.insert(0, str(Path(__file__).parent))

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettledClient(Client):
    """werkzeug's test client that, after each response, waits until the app has stored
    the rest of any meta tile it created (``mapproxy.tilemanager.background``): tests see
    the cache as a client would a moment later."""

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        from mapproxy.tilemanager.background import wait_for_background_stores

        response = super().open(*args, **kwargs)
        wait_for_background_stores()
        return response


@pytest.fixture(autouse=True)
def _finish_background_stores() -> Iterator[None]:
    """No test leaves meta tiles being stored into a directory that is about to go."""
    yield
    from mapproxy.tilemanager.background import wait_for_background_stores

    wait_for_background_stores()


@pytest.fixture(autouse=True)
def _restore_log_handlers() -> Iterator[None]:
    """Commands run in-process attach handlers to the stream of the moment (pytest's
    captured stdout); drop them afterwards, or later tests log into closed files."""
    loggers = [logging.getLogger(), logging.getLogger("mapproxy")]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def image_from(response) -> Image.Image:  # type: ignore[no-untyped-def]
    """Decode a response body as an image."""
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Client]:
    """``make_app(yaml_text, **files)``: write the config into tmp_path and build a client."""

    def factory(yaml_text: str, **files: str) -> Client:
        from mapproxy.wsgiapp import make_wsgi_app

        for name, content in files.items():
            (tmp_path / name).write_text(textwrap.dedent(content))
        config = tmp_path / "mapproxy.yaml"
        config.write_text(textwrap.dedent(yaml_text))
        app = make_wsgi_app(str(config))
        client = SettledClient(app)
        client.app = app  # type: ignore[attr-defined]
        return client

    return factory
