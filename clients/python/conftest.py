"""Fixtures for the generated-client tests: a running service and the client generated from
openapi/openapi.json. scripts/client_tests.sh generates the client, starts the service and sets:

    IPET_BASE_URL     the running service, e.g. http://127.0.0.1:41234
    IPET_CLIENT_DIR   the directory holding the generated package `ipet_client`
"""

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLICE = REPO / "data" / "tj-oconnor-2021-slice"


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through scripts/client_tests.sh", pytrace=False)
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    return _need("IPET_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def ipet_client():
    """The generated package (imported by name so that a missing module fails loudly)."""
    sys.path.insert(0, _need("IPET_CLIENT_DIR"))
    return importlib.import_module("ipet_client")


@pytest.fixture(scope="session")
def client(ipet_client, base_url):
    # The service is unauthenticated here (loopback, no tokens): the plain Client.
    with ipet_client.Client(base_url=base_url, raise_on_unexpected_status=True, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="session")
def pcaps() -> dict:
    """Real captures from the in-repo slice: device name -> pcap path."""
    return {p.stem: p for p in sorted((SLICE / "pcaps").glob("*.pcap"))}
