-- A placeholder on the classes branch (issue 14), which numbers its migration 0008:
-- other branches add 0006 and 0007. Delete this file when merging theirs.
SELECT 1;
