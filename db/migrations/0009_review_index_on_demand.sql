-- The by-tail index of 0008 slowed every import (about 0.6 s per million edges) for the sake of
-- the review surfaces alone; they now create it when they start (`Store::ensure_review_indexes`,
-- same name), and bulk imports rebuild it only where it exists. Databases that ran 0008 drop it
-- here; 0008 itself stays, byte for byte, because sqlx checks applied migrations' checksums.
DROP INDEX IF EXISTS edges_live_tail;
