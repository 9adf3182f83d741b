"""The API through a Python client generated from openapi/openapi.json (openapi-python-client),
against a running service: every operation, every response format, the error paths.

Every request is built by the generated code. One limit of the generator, not of the spec: a
response with several media types (JSON, npy, CSV for the same 200) gets a parser for the first
one only (JSON), so for `format=npy|csv` the tests send the request the generated module builds
(`_get_kwargs`) through the generated client's own HTTP session and decode the body here.
"""

import csv
import importlib
import io
import time
import uuid

import numpy as np
import pytest

DEVICE = "schlage-lock-01"  # the smallest capture of the slice
COLUMNS = ["in_packets", "in_bytes", "out_packets", "out_bytes"]
OUTPUT_COLUMNS = ["direction", "is_dummy", "size_bytes", "time_s"]


def op(ipet_client, name: str):
    """A generated operation module, e.g. op(c, "perturbations.get_perturbations")."""
    return importlib.import_module(f"ipet_client.api.{name}")


def model(ipet_client, name: str):
    return getattr(importlib.import_module("ipet_client.models"), name)


def send(client, module, **kwargs):
    """The request the generated module builds, through the generated client's session; for the
    media types the generated parser does not read (npy, CSV)."""
    return client.get_httpx_client().request(**module._get_kwargs(**kwargs))


# Models whose schema admits fields beyond those it names, on purpose: /devices passes the
# manifest's own fields through (`#[serde(flatten)] other`): a device's class_index, dir,
# *_windows; the training settings beyond the ones the service uses.
OPEN_MODELS = {"ManifestDevice", "Settings"}


def assert_documented(obj, path="body"):
    """The generated models keep fields that the spec does not name in `additional_properties`:
    every field the service sends must be documented. Recurses into nested models."""
    if not hasattr(obj, "additional_properties"):
        return
    fields = [a.name for a in type(obj).__attrs_attrs__ if a.name != "additional_properties"]
    if fields and type(obj).__name__ not in OPEN_MODELS:  # not a free-form `type: object`
        extra = sorted(obj.additional_properties)
        assert not extra, f"{path} ({type(obj).__name__}) has fields the spec does not document: {extra}"
    for name in fields:
        value = getattr(obj, name)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            assert_documented(item, f"{path}.{name}" + (f"[{i}]" if isinstance(value, list) else ""))


# ---- models and operations ------------------------------------------------------------------


@pytest.fixture(scope="module")
def devices(ipet_client, client):
    r = op(ipet_client, "models.get_devices").sync_detailed(client=client)
    assert r.status_code == 200
    assert isinstance(r.parsed, model(ipet_client, "ModelSetInfo"))
    return r.parsed


def test_devices_lists_the_model_set(ipet_client, client, devices, pcaps, conforms):
    assert_documented(devices, "ModelSetInfo")
    conforms(op(ipet_client, "models.get_devices").sync_detailed(client=client), "ModelSetInfo")
    names = {d.name for d in devices.devices}
    assert set(pcaps) <= names, f"the slice's devices {sorted(set(pcaps) - names)} are not served"
    assert devices.columns == COLUMNS
    assert len(devices.generations) >= 1
    assert devices.generation_choices == [str(g) for g in range(len(devices.generations))] + ["mix"]
    assert devices.settings.omega > 0


def test_healthz_readyz_metrics(ipet_client, client, conforms):
    h = op(ipet_client, "operations.healthz").sync_detailed(client=client)
    assert h.status_code == 200 and h.parsed.status == "ok"
    assert_documented(h.parsed, "Health")
    conforms(h, "Health")

    r = op(ipet_client, "operations.readyz").sync_detailed(client=client)
    assert r.status_code == 200
    assert r.parsed.status == "ok"
    assert r.parsed.database == "sqlite"
    assert r.parsed.model_set and r.parsed.model_set.startswith("tj-oconnor-2021@")
    conforms(r, "Health")

    m = op(ipet_client, "operations.metrics_text").sync_detailed(client=client)
    assert m.status_code == 200
    assert m.headers["content-type"].startswith("text/plain")
    assert isinstance(m.parsed, str)
    assert "ipet_http_requests_total" in m.parsed


# ---- perturbations ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schedule(ipet_client, client, devices):
    r = op(ipet_client, "perturbations.get_perturbations").sync_detailed(DEVICE, "0", client=client, n=3, seed=7)
    assert r.status_code == 200, r.content
    assert isinstance(r.parsed, model(ipet_client, "PerturbationResponse"))
    return r


def test_schedule_as_json(schedule, devices, conforms):
    s = schedule.parsed
    assert_documented(s, "PerturbationResponse")
    conforms(schedule, "PerturbationResponse")
    assert s.device == DEVICE and s.generation == "0" and s.n == 3 and s.seed == 7
    assert s.columns == COLUMNS
    assert s.slots_per_window == devices.settings.slots_per_window
    assert len(s.rows) == 3 * s.slots_per_window
    assert all(len(row) == 4 and all(isinstance(v, int) and v >= 0 for v in row) for row in s.rows)
    assert s.window_generations == [0, 0, 0]
    assert s.model_set == f"{devices.name}@{devices.version}"
    assert schedule.headers["x-job-id"] == str(s.job_id)
    assert schedule.headers["location"] == f"/perturbations/jobs/{s.job_id}"


def test_schedule_as_npy_and_csv(ipet_client, client, schedule):
    rows = np.array(schedule.parsed.rows, dtype=np.int32)
    get = op(ipet_client, "perturbations.get_perturbations")
    Format = model(ipet_client, "Format")

    npy = send(client, get, dev_id=DEVICE, generation="0", n=3, seed=7, format_=Format.NPY)
    assert npy.status_code == 200
    assert npy.headers["content-type"] == "application/x-npy"
    arr = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert arr.dtype == np.int32 and arr.shape == rows.shape
    np.testing.assert_array_equal(arr, rows)  # the same seed: the same schedule
    assert uuid.UUID(npy.headers["x-job-id"]) != schedule.parsed.job_id  # ... stored as a new job

    text = send(client, get, dev_id=DEVICE, generation="0", n=3, seed=7, format_=Format.CSV)
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(text.text)))
    assert table[0] == COLUMNS
    np.testing.assert_array_equal(np.array(table[1:], dtype=np.int32), rows)


def test_mix_draws_every_window_from_a_generation(ipet_client, client, devices):
    r = op(ipet_client, "perturbations.get_perturbations").sync_detailed(DEVICE, "mix", client=client, n=8, seed=1)
    assert r.status_code == 200
    assert r.parsed.generation == "mix"
    assert len(r.parsed.window_generations) == 8
    assert all(0 <= g < len(devices.generations) for g in r.parsed.window_generations)


def test_stored_schedule_by_job_id_in_every_format(ipet_client, client, schedule):
    job = op(ipet_client, "perturbations.get_perturbation_job")
    Format = model(ipet_client, "Format")
    job_id = schedule.parsed.job_id

    again = job.sync_detailed(job_id, client=client)
    assert again.status_code == 200
    assert again.parsed.to_dict() == schedule.parsed.to_dict()

    explicit = job.sync_detailed(job_id, client=client, format_=Format.JSON)
    assert explicit.status_code == 200 and explicit.parsed.rows == schedule.parsed.rows

    npy = send(client, job, id=job_id, format_=Format.NPY)
    assert npy.status_code == 200 and npy.headers["x-job-id"] == str(job_id)
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.content)), np.array(schedule.parsed.rows))

    text = send(client, job, id=job_id, format_=Format.CSV)
    assert text.status_code == 200
    assert text.text.splitlines()[0] == ",".join(COLUMNS)
    assert len(text.text.splitlines()) == 1 + len(schedule.parsed.rows)


# ---- perturbation errors ----------------------------------------------------------------------


def error(ipet_client, r, status: int, code: str):
    assert r.status_code == status, (r.status_code, r.content)
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.parsed, model(ipet_client, "ErrorBody")), r.content
    assert r.parsed.code == code, r.parsed
    assert r.parsed.message
    assert_documented(r.parsed, "ErrorBody")
    return r.parsed


def test_unknown_device_is_404_with_a_code(ipet_client, client):
    r = op(ipet_client, "perturbations.get_perturbations").sync_detailed("toaster-01", "0", client=client, n=1)
    e = error(ipet_client, r, 404, "unknown_device")
    assert "toaster-01" in e.message and DEVICE in e.message


def test_unknown_generation_is_404(ipet_client, client):
    r = op(ipet_client, "perturbations.get_perturbations").sync_detailed(DEVICE, "99", client=client, n=1)
    assert r.status_code in (400, 404) and isinstance(r.parsed, model(ipet_client, "ErrorBody")), r.content


@pytest.mark.parametrize("n", [0, 10**9])
def test_bad_n_is_400(ipet_client, client, n):
    r = op(ipet_client, "perturbations.get_perturbations").sync_detailed(DEVICE, "0", client=client, n=n)
    e = error(ipet_client, r, 400, "invalid_n")
    assert str(n) in e.message


def test_unknown_perturbation_job_is_404(ipet_client, client):
    r = op(ipet_client, "perturbations.get_perturbation_job").sync_detailed(uuid.uuid4(), client=client)
    error(ipet_client, r, 404, "unknown_job")


# ---- simulations ------------------------------------------------------------------------------


def wait_for(ipet_client, client, job_id, timeout=120.0):
    get = op(ipet_client, "simulations.get_simulation")
    deadline = time.monotonic() + timeout
    while True:
        r = get.sync_detailed(job_id, client=client)
        assert r.status_code == 200, r.content
        if r.parsed.status in ("succeeded", "failed") or time.monotonic() > deadline:
            return r.parsed
        assert r.parsed.status in ("queued", "running"), r.parsed.status
        time.sleep(0.25)


@pytest.fixture(scope="module")
def uploaded_simulation(ipet_client, client, pcaps, conforms):
    """A real capture uploaded as multipart/form-data, defended by generation 0, run to the end."""
    from ipet_client.types import File

    Upload = model(ipet_client, "SimulationUpload")
    with open(pcaps[DEVICE], "rb") as f:
        body = Upload(
            trace=File(payload=f, file_name=pcaps[DEVICE].name, mime_type="application/vnd.tcpdump.pcap"),
            device=DEVICE,
            generation="0",
            seed=3,
        )
        r = op(ipet_client, "simulations.post_simulation").sync_detailed(client=client, body=body)
    assert r.status_code == 202, r.content
    conforms(r, "SimulationAccepted")
    accepted = r.parsed
    assert isinstance(accepted, model(ipet_client, "SimulationAccepted"))
    assert_documented(accepted, "SimulationAccepted")
    assert accepted.status == "queued"
    assert accepted.location == f"/simulations/{accepted.id}" == r.headers["location"]
    return accepted, wait_for(ipet_client, client, accepted.id)


def test_uploaded_capture_simulation_succeeds(ipet_client, client, uploaded_simulation, conforms):
    accepted, status = uploaded_simulation
    conforms(op(ipet_client, "simulations.get_simulation").sync_detailed(accepted.id, client=client),
             "SimulationStatus")
    assert status.status == "succeeded", status.error
    assert_documented(status, "SimulationStatus")
    assert status.id == accepted.id
    assert status.attempts >= 1
    assert status.trace_packets > 0
    assert status.output == f"/simulations/{accepted.id}/output"
    assert status.output_rows and status.output_rows > status.trace_packets  # real + cover packets
    assert status.started_at and status.finished_at and status.created_at <= status.finished_at
    summary = status.summary.to_dict()
    assert summary, "a succeeded job has a summary"


def test_simulation_output_in_every_format(ipet_client, client, uploaded_simulation, conforms):
    accepted, status = uploaded_simulation
    out = op(ipet_client, "simulations.get_simulation_output")
    Format = model(ipet_client, "Format")

    j = out.sync_detailed(accepted.id, client=client)
    assert j.status_code == 200, j.content
    assert isinstance(j.parsed, model(ipet_client, "SimulationOutput"))
    conforms(j, "SimulationOutput")
    assert_documented(j.parsed, "SimulationOutput")
    assert j.parsed.columns == OUTPUT_COLUMNS
    rows = np.array(j.parsed.rows, dtype=np.float64)
    assert rows.shape == (status.output_rows, 4)
    assert set(np.unique(rows[:, 0])) <= {-1.0, 1.0}
    assert set(np.unique(rows[:, 1])) == {0.0, 1.0}  # real and dummy packets
    assert int((rows[:, 1] == 0).sum()) == status.trace_packets
    assert np.all(np.diff(rows[:, 3]) >= 0), "time-ordered"

    npy = send(client, out, id=accepted.id, format_=Format.NPY)
    assert npy.status_code == 200 and npy.headers["content-type"] == "application/x-npy"
    arr = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr, rows)

    text = send(client, out, id=accepted.id, format_=Format.CSV)
    assert text.status_code == 200
    table = list(csv.reader(io.StringIO(text.text)))
    assert table[0] == OUTPUT_COLUMNS and len(table) == 1 + len(rows)
    np.testing.assert_allclose(np.array(table[1:], dtype=np.float64), rows)


def test_json_packets_with_a_baseline(ipet_client, client):
    Request = model(ipet_client, "SimulationRequest")
    Packet = model(ipet_client, "TracePacket")
    Direction = model(ipet_client, "Direction")
    BaselineKind = model(ipet_client, "BaselineKind")
    packets = [
        Packet(time=float(t), size=100 + t, direction=Direction.OUT if t % 2 else Direction.IN)
        for t in range(0, 40, 2)
    ]
    body = Request(device=DEVICE, packets=packets, baseline=BaselineKind.CONSTANT, seed=5)
    r = op(ipet_client, "simulations.post_simulation").sync_detailed(client=client, body=body)
    assert r.status_code == 202, r.content
    status = wait_for(ipet_client, client, r.parsed.id)
    assert status.status == "succeeded", status.error
    assert status.trace_packets == len(packets)
    o = op(ipet_client, "simulations.get_simulation_output").sync_detailed(r.parsed.id, client=client)
    assert o.status_code == 200 and len(o.parsed.rows) == status.output_rows


def test_simulation_errors(ipet_client, client, pcaps):
    from ipet_client.types import File

    post = op(ipet_client, "simulations.post_simulation")
    Upload = model(ipet_client, "SimulationUpload")

    # Not a capture.
    body = Upload(trace=File(payload=io.BytesIO(b"not a capture"), file_name="x.pcap"), device=DEVICE, generation="0")
    error(ipet_client, post.sync_detailed(client=client, body=body), 400, "not_a_capture")

    # No cover named.
    with open(pcaps[DEVICE], "rb") as f:
        body = Upload(trace=File(payload=f, file_name=pcaps[DEVICE].name), device=DEVICE)
        error(ipet_client, post.sync_detailed(client=client, body=body), 400, "missing_cover")

    # Unknown simulation job, and the output of one.
    missing = uuid.uuid4()
    error(ipet_client, op(ipet_client, "simulations.get_simulation").sync_detailed(missing, client=client), 404,
          "unknown_job")
    error(ipet_client, op(ipet_client, "simulations.get_simulation_output").sync_detailed(missing, client=client),
          404, "unknown_job")

