"""The WSDL the INSi simulator serves at ``?wsdl``, pointing at the live endpoint.

Practice software often generates its INSi client from the WSDL, and a harness test
needs an independent client too (zeep); both must find the simulator's real URL in
the service address. The WSDL itself is a package file (``insi.wsdl``, types inline)
so it can be read and diffed as a document; only its ``soap12:address`` changes here.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from lxml import etree

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP12_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSDL_FILE = "insi.wsdl"


@lru_cache(maxsize=1)
def packaged_wsdl() -> bytes:
    """The WSDL as shipped in the package (placeholder address)."""
    return resources.files("harness.simulators.insi").joinpath(WSDL_FILE).read_bytes()


def wsdl_for(location: str) -> bytes:
    """The packaged WSDL with every ``soap12:address/@location`` set to ``location``."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(packaged_wsdl(), parser)
    for address in root.iter(f"{{{SOAP12_WSDL_NS}}}address"):
        address.set("location", location)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
