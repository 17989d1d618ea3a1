"""WMS exception responses: XML documents per version, INIMAGE and BLANK images."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from werkzeug.wrappers import Response

from mapproxy.image.blank import blank_image
from mapproxy.image.message import message_image
from mapproxy.service.base import no_cache, xml_response, xml_safe
from mapproxy.service.wms.request import ExceptionContext

_XML_DECLARATION = '<?xml version="1.0"?>\n'

_CONTENT_TYPES = {
    "1.0.0": "text/xml",
    "1.1.0": "application/vnd.ogc.se_xml",
    "1.1.1": "application/vnd.ogc.se_xml",
    "1.3.0": "text/xml; charset=utf-8",
}


def exception_content_type(version: str) -> str:
    """Content-Type of an XML exception document of ``version``."""
    return _CONTENT_TYPES.get(version, "text/xml; charset=utf-8")


def exception_document(version: str, message: str, code: str | None = None) -> str:
    """The XML exception document MapProxy answers with for ``version``."""
    text = escape(xml_safe(message))
    if version == "1.0.0":
        return f'{_XML_DECLARATION}<WMTException version="1.0.0">{text}</WMTException>\n'
    code_attr = f" code={quoteattr(xml_safe(code))}" if code else ""
    exception = f"    <ServiceException{code_attr}>{text}</ServiceException>\n"
    if version == "1.3.0":
        return (
            f"{_XML_DECLARATION}"
            '<ServiceExceptionReport version="1.3.0" xmlns="http://www.opengis.net/ogc"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            ' xsi:schemaLocation="http://www.opengis.net/ogc'
            ' http://schemas.opengis.net/wms/1.3.0/exceptions_1_3_0.xsd">\n'
            f"{exception}"
            "</ServiceExceptionReport>\n"
        )
    dtd_version = version.replace(".", "_")
    return (
        f"{_XML_DECLARATION}"
        f'<!DOCTYPE ServiceExceptionReport SYSTEM "http://schemas.opengis.net/wms/{version}/'
        f'exception_{dtd_version}.dtd">\n'
        f'<ServiceExceptionReport version="{version}">\n'
        f"{exception}"
        "</ServiceExceptionReport>\n"
    )


def xml_exception_response(
    version: str, message: str, code: str | None = None, status: int = 500
) -> Response:
    """An XML exception response (status 500 unless told otherwise), not cacheable."""
    body = exception_document(version, message, code).encode("utf-8")
    return no_cache(xml_response(body, exception_content_type(version), status=status))


def exception_response(
    context: ExceptionContext, message: str, code: str | None = None, status: int = 500
) -> Response:
    """An exception as XML, or as an INIMAGE/BLANK image (status 200) per ``context``."""
    if context.mode == "xml" or context.format is None:
        return xml_exception_response(context.version, message, code, status)
    options = context.format.options.updated(
        transparent=context.transparent, bgcolor=context.bgcolor
    )
    if context.mode == "blank":
        result = blank_image(context.size, options)
    else:
        result = message_image(xml_safe(message), context.size, options)
    response = Response(result.as_bytes(options), mimetype=options.mime_type)
    return no_cache(response)
