-- Reserved: the number another change (DBOS-style queues) takes; this file does nothing.
-- When that change's 0006 is merged, delete this file.
SELECT 1;
