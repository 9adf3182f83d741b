-- No query reads perturbation jobs by requester (a job is fetched by id, its owner checked on the
-- row), and every insert paid for the index: with 64 KiB pages, one more page to the WAL per
-- commit.
DROP INDEX IF EXISTS perturbation_jobs_requester;
