"""Access control through the generated client: a service with bearer tokens, callers with and
without the scopes an operation needs, and jobs that only their owner sees. Every status asserted
here must be documented for its operation (the client raises on an undocumented one)."""

import importlib
import uuid

DEVICE = "schlage-lock-01"


def op(ipet_client, name: str):
    return importlib.import_module(f"ipet_client.api.{name}")


def error(ipet_client, r, status: int, code: str):
    assert r.status_code == status, (r.status_code, r.content)
    assert type(r.parsed).__name__ == "ErrorBody", r.content
    assert r.parsed.code == code, r.parsed
    return r.parsed


def test_health_and_docs_need_no_token(ipet_client, as_caller):
    anonymous = as_caller(None)
    assert op(ipet_client, "operations.healthz").sync_detailed(client=anonymous).status_code == 200
    assert op(ipet_client, "operations.readyz").sync_detailed(client=anonymous).status_code == 200
    assert anonymous.get_httpx_client().get("/openapi.json").status_code == 200


def test_no_token_or_a_bad_one_is_401(ipet_client, as_caller):
    get = op(ipet_client, "perturbations.get_perturbations")
    r = get.sync_detailed(DEVICE, "0", client=as_caller(None), n=1)
    error(ipet_client, r, 401, "unauthorized")
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    error(ipet_client, get.sync_detailed(DEVICE, "0", client=as_caller("not-a-token"), n=1), 401, "unauthorized")
    error(ipet_client, op(ipet_client, "models.get_devices").sync_detailed(client=as_caller(None)), 401,
          "unauthorized")
    error(ipet_client, op(ipet_client, "operations.metrics_text").sync_detailed(client=as_caller(None)), 401,
          "unauthorized")


def test_scopes(ipet_client, as_caller):
    get = op(ipet_client, "perturbations.get_perturbations")
    assert get.sync_detailed(DEVICE, "0", client=as_caller("gw-b"), n=1).status_code == 200
    error(ipet_client, get.sync_detailed(DEVICE, "0", client=as_caller("prom"), n=1), 403, "forbidden")

    metrics = op(ipet_client, "operations.metrics_text")
    assert metrics.sync_detailed(client=as_caller("prom")).status_code == 200
    error(ipet_client, metrics.sync_detailed(client=as_caller("gw-b")), 403, "forbidden")

    model = importlib.import_module("ipet_client.models")
    body = model.SimulationRequest(
        device=DEVICE,
        packets=[model.TracePacket(time=0.0, size=10, direction=model.Direction.OUT)],
        baseline=model.BaselineKind.CONSTANT,
    )
    post = op(ipet_client, "simulations.post_simulation")
    error(ipet_client, post.sync_detailed(client=as_caller("gw-b"), body=body), 403, "forbidden")


def test_a_caller_sees_only_its_own_jobs(ipet_client, as_caller):
    get = op(ipet_client, "perturbations.get_perturbations")
    job = op(ipet_client, "perturbations.get_perturbation_job")
    mine = get.sync_detailed(DEVICE, "0", client=as_caller("gw-a"), n=1, seed=1)
    assert mine.status_code == 200
    job_id = mine.parsed.job_id
    assert job.sync_detailed(job_id, client=as_caller("gw-a")).status_code == 200
    error(ipet_client, job.sync_detailed(job_id, client=as_caller("gw-b")), 404, "unknown_job")
    error(ipet_client, job.sync_detailed(uuid.uuid4(), client=as_caller("gw-a")), 404, "unknown_job")
