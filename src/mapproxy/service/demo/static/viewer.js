// Layer preview for the MapProxy demo page. Reads its settings from window.MAPPROXY_DEMO.
(function () {
  "use strict";
  const cfg = window.MAPPROXY_DEMO;

  function projectionFor(code, units, extent) {
    const known = ol.proj.get(code === "EPSG:900913" ? "EPSG:3857" : code);
    if (known) {
      return known;
    }
    // Unknown to OpenLayers without proj4: a plain projection is enough because every
    // layer of the map is requested in this SRS.
    return new ol.proj.Projection({ code: code, units: units, extent: extent });
  }

  function tileLayer() {
    const rows = cfg.grid_rows;
    const origins = cfg.resolutions.map(function (res, z) {
      const top = cfg.grid_origin === "nw"
        ? cfg.grid_extent[3]
        : cfg.grid_extent[1] + rows[z] * cfg.tile_size[1] * res;
      return [cfg.grid_extent[0], top];
    });
    const tileGrid = new ol.tilegrid.TileGrid({
      origins: origins,
      resolutions: cfg.resolutions,
      tileSize: cfg.tile_size,
      extent: cfg.grid_extent,
    });
    const source = new ol.source.XYZ({
      url: cfg.url,
      tileGrid: tileGrid,
      projection: projectionFor(cfg.srs, cfg.units, cfg.grid_extent),
    });
    return { layer: new ol.layer.Tile({ source: source }), resolutions: cfg.resolutions };
  }

  function wmsLayer() {
    const source = new ol.source.ImageWMS({
      url: cfg.url,
      params: {
        LAYERS: cfg.layer,
        FORMAT: cfg.format,
        TRANSPARENT: cfg.transparent ? "TRUE" : "FALSE",
        VERSION: cfg.version,
      },
      projection: projectionFor(cfg.srs, cfg.units, cfg.extent),
      ratio: 1,
    });
    return { layer: new ol.layer.Image({ source: source }), resolutions: undefined };
  }

  const main = cfg.kind === "wms" ? wmsLayer() : tileLayer();
  const projection = projectionFor(cfg.srs, cfg.units, cfg.kind === "wms" ? cfg.extent : cfg.grid_extent);
  const layers = [];
  let background = null;
  if (cfg.background) {
    background = new ol.layer.Tile({ source: new ol.source.XYZ({ url: cfg.background }) });
    layers.push(background);
  }
  layers.push(main.layer);
  const map = new ol.Map({
    target: "map",
    layers: layers,
    view: new ol.View({ projection: projection, resolutions: main.resolutions }),
  });
  map.getView().fit(cfg.extent);
  document.getElementById("zoom-extent").addEventListener("click", function () {
    map.getView().fit(cfg.extent);
  });
  document.getElementById("toggle-background").addEventListener("click", function () {
    if (background) {
      background.setVisible(!background.getVisible());
    }
  });
  window.mapproxyDemoMap = map;
})();
