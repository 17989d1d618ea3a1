"""Start-up work: capabilities are built on first request (once), bbox transforms are
memoized, the garbage collector pauses while a config is built."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from mapproxy.config.build import ConfigBuilder
from mapproxy.service.wms.capabilities import CapabilitiesDocuments
from mapproxy.service.wmts.capabilities import CapabilitiesTemplate
from mapproxy.srs import SRS, get_srs

CONFIG = """
services:
  wms:
    srs: ['EPSG:3857', 'EPSG:4326', 'EPSG:25832']
    md: {title: Lazy}
  wmts:
  tms:
sources:
  up:
    type: wms
    req: {url: 'http://127.0.0.1:9/service?', layers: base}
grids:
  utm:
    srs: 'EPSG:25832'
    bbox: [-46133.17, 5048875.26, 1206211.10, 6301219.54]
    origin: nw
caches:
  merc: {grids: [GLOBAL_WEBMERCATOR], sources: [up], cache: {type: file, directory: ./m}}
  utm: {grids: [utm], sources: [up], cache: {type: file, directory: ./u}}
layers:
  - {name: merc, title: Mercator, sources: [merc]}
  - {name: utm, title: UTM, sources: [utm]}
"""

WMS_CAPS = "/service?SERVICE=WMS&REQUEST=GetCapabilities&VERSION="


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Records every WMS document build (version, tiled) and every WMTS template build."""
    seen: dict[str, list[Any]] = {"wms": [], "wmts": []}
    wms_build = CapabilitiesDocuments._build
    wmts_build = CapabilitiesTemplate._build

    def record_wms(
        self: CapabilitiesDocuments, version: str, view: Any = None, tiled: bool = False
    ) -> str:
        seen["wms"].append((version, tiled))
        return wms_build(self, version, view, tiled)

    def record_wmts(self: CapabilitiesTemplate) -> None:
        seen["wmts"].append(self._rest_template is not None)
        wmts_build(self)

    monkeypatch.setattr(CapabilitiesDocuments, "_build", record_wms)
    monkeypatch.setattr(CapabilitiesTemplate, "_build", record_wmts)
    yield seen


def test_loading_builds_no_capabilities_document(
    make_app: Callable[..., Client], builds: dict[str, list[Any]]
) -> None:
    make_app(CONFIG)
    assert builds == {"wms": [], "wmts": []}


def test_each_document_is_built_once_on_first_request(
    make_app: Callable[..., Client], builds: dict[str, list[Any]]
) -> None:
    client = make_app(CONFIG)
    first = client.get(WMS_CAPS + "1.1.1")
    again = client.get(WMS_CAPS + "1.1.1")
    assert first.status_code == again.status_code == 200
    assert first.data == again.data
    assert builds["wms"] == [("1.1.1", False)]
    client.get(WMS_CAPS + "1.3.0")
    client.get(WMS_CAPS + "1.1.1&tiled=true")
    client.get(WMS_CAPS + "1.3.0")
    assert builds["wms"] == [("1.1.1", False), ("1.3.0", False), ("1.1.1", True)]

    kvp = client.get("/service?SERVICE=WMTS&REQUEST=GetCapabilities")
    rest = client.get("/wmts/1.0.0/WMTSCapabilities.xml")
    client.get("/wmts/1.0.0/WMTSCapabilities.xml")
    assert kvp.status_code == rest.status_code == 200
    assert b"<ows:Identifier>utm</ows:Identifier>" in rest.data
    assert builds["wmts"] == [False, True]


def test_documents_do_not_depend_on_request_order(make_app: Callable[..., Client]) -> None:
    paths = [WMS_CAPS + v for v in ("1.0.0", "1.1.0", "1.1.1", "1.3.0")]
    paths += [WMS_CAPS + "1.1.1&tiled=true", "/wmts/1.0.0/WMTSCapabilities.xml"]
    forward = make_app(CONFIG)
    backward = make_app(CONFIG)
    in_order = [forward.get(path).data for path in paths]
    reversed_order = [backward.get(path).data for path in reversed(paths)][::-1]
    assert in_order == reversed_order
    # the 25832 bbox of the mercator layer: transformed, not copied from the grid
    assert b'<BoundingBox SRS="EPSG:25832"' in in_order[2]


def test_concurrent_first_requests_build_one_document(
    make_app: Callable[..., Client], builds: dict[str, list[Any]]
) -> None:
    client = make_app(CONFIG)
    app = client.app  # type: ignore[attr-defined]
    bodies: list[bytes] = []
    barrier = threading.Barrier(4)

    def fetch() -> None:
        barrier.wait()
        bodies.append(Client(app).get(WMS_CAPS + "1.3.0").data)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bodies) == 4 and len(set(bodies)) == 1
    assert builds["wms"] == [("1.3.0", False)]


def test_repeated_bbox_transformations_are_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    transform_to = SRS.transform_to

    def counting(self: SRS, other: SRS, points: Any) -> Any:
        calls.append((self.code, other.code))
        return transform_to(self, other, points)

    monkeypatch.setattr(SRS, "transform_to", counting)
    utm, wgs84 = get_srs("EPSG:25832"), get_srs("EPSG:4326")
    bbox = (412345.5, 5512345.5, 512345.5, 5612345.5)  # used by no other test
    first = utm.transform_bbox_to(wgs84, bbox)
    assert utm.transform_bbox_to(wgs84, bbox) == first
    assert utm.transform_bbox_to(wgs84, bbox, with_points=4) != first
    assert calls == [("EPSG:25832", "EPSG:4326"), ("EPSG:25832", "EPSG:4326")]
    assert 7.0 < first[0] < 9.0 and 49.0 < first[1] < 50.0


def test_garbage_collector_pauses_while_building_and_is_restored(
    make_app: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    during: list[bool] = []
    build = ConfigBuilder.build

    def recording(self: ConfigBuilder) -> Any:
        during.append(gc.isenabled())
        return build(self)

    monkeypatch.setattr(ConfigBuilder, "build", recording)
    assert gc.isenabled()
    make_app(CONFIG)
    assert during == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        make_app(CONFIG)
        assert not gc.isenabled()  # a caller's choice stays
    finally:
        gc.enable()
