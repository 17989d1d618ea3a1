"""OWS dispatcher for ``/service``, ``/ows`` and ``/wms``: route by the SERVICE parameter."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from mapproxy.service.base import (
    Service,
    no_cache,
    ows_exception_report,
    query_params,
    xml_response,
)

_OWS_CONTENT_TYPE = "text/xml; charset=utf-8"


class OWSDispatcher:
    """Dispatches KVP requests to the WMS or WMTS service named by ``SERVICE``."""

    def __init__(self, wms: Service | None, wmts_kvp: Service | None) -> None:
        self.services: dict[str, Service] = {}
        if wms is not None:
            self.services["wms"] = wms
        if wmts_kvp is not None:
            self.services["wmts"] = wmts_kvp
        self.wms = wms

    def handle(self, request: Request) -> Response:
        """Answer one request by handing it to the selected service."""
        params = query_params(request)
        service_name = params.get("service")
        if service_name is None:
            # Old clients omit SERVICE: WMS 1.0.0 (WMTVER) and plain GetMap requests.
            is_wms = params.get("wmtver") == "1.0.0" or params.get("request") == "GetMap"
            if is_wms and self.wms is not None:
                return self.wms.handle(request)
            body = ows_exception_report(
                "The service parameter is missing", "MissingParameterValue", "service"
            )
            return xml_response(body, _OWS_CONTENT_TYPE, status=400)
        service = self.services.get(service_name.lower())
        if service is None:
            body = ows_exception_report(
                f'The value of the service parameter "{service_name.lower()}" is invalid',
                "InvalidParameterValue",
                "service",
            )
            return no_cache(xml_response(body, _OWS_CONTENT_TYPE, status=400))
        return service.handle(request)
