"""Server-rendered pages that depend on configuration: the map's tile URL, the model's plots."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask

from fieldops.config import Settings
from tests.web.conftest import clock, login
from web.app import close_app, create_app

TILES = "http://tiles.invalid/{z}/{x}/{y}.png"


@pytest.fixture
def configured_app(web_settings: Settings, tmp_path) -> Iterator[Flask]:
    app = create_app(replace(web_settings, map_tile_url=TILES, data_dir=str(tmp_path)),
                     start_hub=False, clock=clock())
    yield app
    close_app(app)


def test_pages_take_the_tile_url_from_configuration(configured_app, people):
    client = configured_app.test_client()
    login(client, "ada")
    assert f'data-tile-url="{TILES}"' in client.get("/tech/").get_data(as_text=True)


def test_pages_without_a_tile_url_configured_draw_no_tile_layer(app, people):
    client = app.test_client()
    login(client, "ada")
    assert 'data-tile-url=""' in client.get("/tech/").get_data(as_text=True)


def _plot(tmp_path, name: str) -> bytes:
    png = b"\x89PNG\r\n\x1a\n" + name.encode()
    directory = tmp_path / "predict" / "plots"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(png)
    return png


def test_model_page_shows_the_evaluation_plots_that_exist(configured_app, people, tmp_path):
    _plot(tmp_path, "pr_curve.png")
    client = configured_app.test_client()
    login(client, "dora")
    page = client.get("/console/model").get_data(as_text=True)
    assert "/console/model/plots/pr_curve.png" in page and "lead_times.png" not in page


def test_evaluation_plot_is_served_to_staff(configured_app, people, tmp_path):
    png = _plot(tmp_path, "lead_times.png")
    client = configured_app.test_client()
    login(client, "dora")
    assert client.get("/console/model/plots/lead_times.png").data == png


def test_unknown_plot_name_is_not_found(configured_app, people, tmp_path):
    client = configured_app.test_client()
    login(client, "dora")
    assert client.get("/console/model/plots/secrets.png").status_code == 404
