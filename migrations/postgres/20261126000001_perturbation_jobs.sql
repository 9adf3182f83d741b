-- Perturbation jobs: one per schedule served. Times are milliseconds since the Unix epoch.
CREATE TABLE perturbation_jobs (
    id            TEXT    PRIMARY KEY,
    device        TEXT    NOT NULL,
    generation    TEXT    NOT NULL,          -- an index, or 'mix'
    n             BIGINT  NOT NULL,
    seed          BIGINT,                    -- NULL: noise from the operating system
    model_set     TEXT    NOT NULL,          -- name@version
    created_at    BIGINT  NOT NULL,
    requester     TEXT    NOT NULL,
    slots         BIGINT  NOT NULL,
    generations   BYTEA   NOT NULL,          -- one byte per window: the generation it used
    element_bytes BIGINT  NOT NULL,          -- width of each little-endian unsigned value
    vectors       BYTEA   NOT NULL           -- n * slots * 4 values
);
CREATE INDEX perturbation_jobs_requester ON perturbation_jobs (requester, created_at);
