"""A home simulation's live gateway configuration (GET /simulations/{id}/gateway-config) through
the generated client: a home of the in-repo slice submitted as one capture and its device table,
run to the end, then its configuration document: the defense, the spec with the home's sets and
size profiles, the devices with their MACs, IPs and sets; and the error codes."""

import io
import json
import uuid
from pathlib import Path

import pytest

from test_generated_client import assert_documented, error, model, op, wait_for

SLICE_TABLE = Path(__file__).resolve().parents[2] / "data" / "tj-oconnor-2021-slice" / "devices.csv"


def merged_pcap(paths) -> bytes:
    """The slice's per-device captures as one classic pcap (one global header, every record)."""
    out = io.BytesIO()
    header = None
    for p in paths:
        data = p.read_bytes()
        if header is None:
            header = data[:24]
            out.write(header)
        assert data[:4] == header[:4] and data[20:24] == header[20:24], f"{p}: another pcap format"
        out.write(data[24:])
    return out.getvalue()


@pytest.fixture(scope="module")
def home_job(ipet_client, client, pcaps):
    from ipet_client.types import File

    Upload = model(ipet_client, "SimulationUpload")
    Kind = model(ipet_client, "SetDefenseKind")
    body = Upload(
        trace=File(payload=io.BytesIO(merged_pcap(pcaps.values())), file_name="home.pcap"),
        devices=File(payload=io.BytesIO(SLICE_TABLE.read_bytes()), file_name="devices.csv", mime_type="text/csv"),
        defense=Kind.SUPERSEQUENCE,
        k=3,
        seed=1,
    )
    r = op(ipet_client, "simulations.post_simulation").sync_detailed(client=client, body=body)
    assert r.status_code == 202, r.content
    status = wait_for(ipet_client, client, r.parsed.id, timeout=240.0)
    assert status.status == "succeeded", status.error
    # The job's parameters as stored (JSON: the generated JobParams is a union of two models).
    raw = op(ipet_client, "simulations.get_simulation").sync_detailed(r.parsed.id, client=client)
    return r.parsed.id, json.loads(raw.content)["params"]


def test_a_home_simulation_as_the_gateways_configuration(ipet_client, client, home_job, pcaps, conforms):
    job_id, params = home_job
    r = op(ipet_client, "simulations.get_simulation_gateway_config").sync_detailed(job_id, client=client)
    assert r.status_code == 200, r.content
    conforms(r, "GatewayConfig")
    doc = r.parsed
    assert isinstance(doc, model(ipet_client, "GatewayConfig"))
    assert_documented(doc, "GatewayConfig")
    assert doc.defense == "supersequence"
    assert "x-omitted-devices" not in r.headers  # every device of the slice's table has a MAC

    spec = doc.spec
    sets = {s.name: list(s.members) for s in spec.sets}
    assert sorted(m for ms in sets.values() for m in ms) == sorted(pcaps), "every device in one set"
    assert all(len(ms) >= 3 for ms in sets.values()), sets
    # The sets the job ran, in its order.
    assert [(s["name"], s["members"]) for s in params["sets"]] == list(sets.items())
    assert [p.set_ for p in spec.size_profiles] == list(sets), "one size profile per set, in order"
    packets = {d["name"]: d["packets"] for d in params["devices"]}
    for p in spec.size_profiles:
        counted = sum(n for _, n in p.incoming) + sum(n for _, n in p.outgoing)
        assert counted == sum(packets[m] for m in sets[p.set_]), p.set_

    table = {}
    for line in SLICE_TABLE.read_text().splitlines()[1:]:
        name, mac, ip = line.split(",")[:3]
        table[name] = (mac, ip)
    assert [d.name for d in doc.devices] == [m for ms in sets.values() for m in ms], "set by set"
    for d in doc.devices:
        assert (d.mac, list(d.ip)) == (table[d.name][0], [table[d.name][1]]), d
        assert d.name in sets[d.set_]


def test_gateway_configuration_errors(ipet_client, client):
    get = op(ipet_client, "simulations.get_simulation_gateway_config")
    error(ipet_client, get.sync_detailed(uuid.uuid4(), client=client), 404, "unknown_job")

    # A one-device simulation has no home to configure.
    Request = model(ipet_client, "SimulationRequest")
    Packet = model(ipet_client, "TracePacket")
    Direction = model(ipet_client, "Direction")
    BaselineKind = model(ipet_client, "BaselineKind")
    packets = [Packet(time=float(t), size=100 + t, direction=Direction.OUT) for t in range(5)]
    body = Request(device="schlage-lock-01", packets=packets, baseline=BaselineKind.CONSTANT, seed=5)
    r = op(ipet_client, "simulations.post_simulation").sync_detailed(client=client, body=body)
    assert r.status_code == 202, r.content
    assert wait_for(ipet_client, client, r.parsed.id).status == "succeeded"
    e = error(ipet_client, get.sync_detailed(r.parsed.id, client=client), 409, "not_a_home_simulation")
    assert "schlage-lock-01" in e.message
