-- Schedules are stored compact already (one byte per value for iPET's caps) and compress poorly:
-- TOAST's pglz spent ~80 ms failing to shrink a 4 MB schedule on every insert. Kept out of line,
-- uncompressed. Rows already stored are unchanged.
ALTER TABLE perturbation_jobs ALTER COLUMN vectors SET STORAGE EXTERNAL;
