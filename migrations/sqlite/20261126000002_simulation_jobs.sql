-- Simulation jobs: a device trace defended by iPET cover or a baseline, run by a worker pool.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE simulation_jobs (
    id            TEXT    PRIMARY KEY,
    status        TEXT    NOT NULL,          -- queued | running | succeeded | failed
    requester     TEXT    NOT NULL,
    params        TEXT    NOT NULL,          -- JSON: device, defense, mode, seed, settings
    trace         BLOB    NOT NULL,          -- the device's packets, compact encoding
    trace_packets BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    attempts      BIGINT  NOT NULL DEFAULT 0, -- times a worker claimed it
    claim         TEXT,                       -- token of the claim that may finish it
    heartbeat_at  BIGINT,                     -- the claim's worker was alive then
    error         TEXT,
    summary       TEXT,                       -- JSON, when succeeded
    output        BLOB,                       -- defended trace, compact encoding, when succeeded
    output_rows   BIGINT,
    schedule      BLOB                        -- uploaded .npy schedule rows, when the cover is one
);
CREATE INDEX simulation_jobs_queue ON simulation_jobs (status, created_at);
