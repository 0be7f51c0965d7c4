-- Method workflows (@DBOS.dbos_class()): the registered name of a classmethod's or an
-- instance method's class, and the config_name of the DBOSConfiguredInstance an instance
-- method runs on. A rerun (recovery, resume, fork, a queue's claim) finds its receiver by
-- them; NULL for plain functions and staticmethods.
ALTER TABLE dbos_async.workflow_status ADD COLUMN class_name TEXT;
ALTER TABLE dbos_async.workflow_status ADD COLUMN config_name TEXT;
