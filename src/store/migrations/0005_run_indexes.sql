-- What stays cheap as history grows: a run's children (`run show`), and the check after every
-- finished run of whether its workflow has anything to prune (answered from the index alone).
CREATE INDEX runs_parent ON runs (parent_run);
CREATE INDEX runs_workflow_status ON runs (workflow, status, created_at);
