-- When each task's latest delivery was claimed (its run started): written by the claim's own
-- UPDATE, kept with the task once it succeeded (in place) or died. NULL before its first claim.
ALTER TABLE asynctasq_tasks ADD COLUMN started_at INTEGER;
ALTER TABLE asynctasq_dead ADD COLUMN started_at INTEGER;
ALTER TABLE asynctasq_results ADD COLUMN started_at INTEGER;
