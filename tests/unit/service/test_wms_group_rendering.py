"""Which map layers a WMS group renders."""

from __future__ import annotations

from mapproxy.layer.base import WMSLayer
from mapproxy.service.wms.render import expand_layer
from mapproxy.source.base import MapExtent
from mapproxy.srs import get_srs

EXTENT = MapExtent((-180.0, -90.0, 180.0, 90.0), get_srs("EPSG:4326"))


class Marker:
    """A stand-in map layer; rendering is not needed to see what gets drawn."""

    transparent = True
    extent = EXTENT

    def __init__(self, label: str) -> None:
        self.label = label

    def get_map(self, query):  # type: ignore[no-untyped-def]
        raise AssertionError("not rendered in this test")


def layer(name: str | None, *labels: str, children: list[WMSLayer] | None = None) -> WMSLayer:
    return WMSLayer(
        name=name,
        title=name or "group",
        extent=EXTENT,
        map_layers=[Marker(label) for label in labels],  # type: ignore[misc]
        children=children or [],
    )


def labels(node: WMSLayer) -> list[str]:
    return [item.layer.label for item in expand_layer(node)]  # type: ignore[attr-defined]


def test_group_without_sources_renders_children_in_order() -> None:
    group = layer("g", children=[layer("a", "A"), layer("b", "B1", "B2")])
    assert labels(group) == ["A", "B1", "B2"]
    assert [ml.label for _, ml in group.renderable_layers()] == ["A", "B1", "B2"]  # type: ignore[attr-defined]


def test_layer_with_sources_and_children_renders_only_its_sources() -> None:
    group = layer("g", "OWN", children=[layer("a", "A"), layer("b", "B")])
    assert labels(group) == ["OWN"]
    assert [ml.label for _, ml in group.renderable_layers()] == ["OWN"]  # type: ignore[attr-defined]
    # the children stay requestable on their own
    assert labels(group.children[1]) == ["B"]


def test_nested_groups_flatten_depth_first() -> None:
    inner = layer(None, children=[layer("x", "X"), layer("y", "Y")])
    outer = layer("outer", children=[inner, layer("z", "Z")])
    assert labels(outer) == ["X", "Y", "Z"]
