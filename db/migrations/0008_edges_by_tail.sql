-- Review evidence reads the edges around an entity in both directions (neighbours, two-step
-- paths); without this, every lookup by tail scans the whole edge table.
CREATE INDEX edges_live_tail ON edges(tail) WHERE removed_in IS NULL;
