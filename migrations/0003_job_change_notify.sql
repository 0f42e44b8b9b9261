-- Every change to a job row is announced on the channel trainhook_jobs, after it commits, so
-- that each node's in-memory status reads and queue index follow changes made by other nodes
-- (src/jobs/read-cache.ts). A trigger catches every writer, not only the code paths we know of.
CREATE OR REPLACE FUNCTION trainhook_job_changed() RETURNS trigger AS $$
DECLARE
  r jobs%ROWTYPE;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM pg_notify('trainhook_jobs', json_build_object('id', r.id, 'seq', r.seq, 'state', CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE r.state::text END)::text);
  RETURN NULL;
END
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION trainhook_job_changed();
