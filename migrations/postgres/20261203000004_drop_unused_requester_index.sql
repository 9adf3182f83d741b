-- No query reads perturbation jobs by requester (a job is fetched by id, its owner checked on the
-- row), and every insert paid for the index.
DROP INDEX IF EXISTS perturbation_jobs_requester;
