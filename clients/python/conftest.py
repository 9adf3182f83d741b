"""Fixtures for the generated-client tests: a running service and the client generated from
openapi/openapi.json. scripts/client_tests.sh generates the client, starts the service and sets:

    IPET_BASE_URL     the running service, e.g. http://127.0.0.1:41234
    IPET_CLIENT_DIR   the directory holding the generated package `ipet_client`
    IPET_OPENAPI      the spec it was generated from (openapi/openapi.json)
"""

import importlib
import json
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
def conforms():
    """conforms(response, "Schema"): the raw JSON body is valid against the spec's component
    schema (JSON Schema 2020-12, as OpenAPI 3.1 says), on top of the generated model's parsing."""
    import jsonschema

    spec = json.loads(Path(_need("IPET_OPENAPI")).read_text())

    def check(response, name: str):
        assert name in spec["components"]["schemas"], f"no schema {name} in the spec"
        validator = jsonschema.Draft202012Validator({**spec, "$ref": f"#/components/schemas/{name}"})
        body = json.loads(response.content)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{name}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in errors[:5])

    return check


@pytest.fixture(scope="session")
def pcaps() -> dict:
    """Real captures from the in-repo slice: device name -> pcap path."""
    return {p.stem: p for p in sorted((SLICE / "pcaps").glob("*.pcap"))}


@pytest.fixture(scope="session")
def tokens_url() -> str:
    """A second service, configured with bearer tokens (see scripts/client_tests.sh)."""
    return _need("IPET_TOKENS_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def as_caller(ipet_client, tokens_url):
    """as_caller("gw-a" | "gw-b" | "prom" | None | "<a bad token>"): a generated client for the
    service with tokens; None: no Authorization header at all."""
    tokens = {
        "gw-a": _need("IPET_TOKEN_GW_A"),  # perturbations, simulations
        "gw-b": _need("IPET_TOKEN_GW_B"),  # perturbations
        "prom": _need("IPET_TOKEN_PROM"),  # metrics
    }
    made = []

    def make(who):
        if who is None:
            c = ipet_client.Client(base_url=tokens_url, raise_on_unexpected_status=True, timeout=60.0)
        else:
            c = ipet_client.AuthenticatedClient(base_url=tokens_url, token=tokens.get(who, who),
                                                raise_on_unexpected_status=True, timeout=60.0)
        made.append(c)
        return c

    yield make
    for c in made:
        c.get_httpx_client().close()
