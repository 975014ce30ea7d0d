-- Several applications (SmsSdkAppIds) of one account: every record names the application whose
-- queue or by-number pull gave it. A new warehouse gets the column here; in one made before, the
-- column is added by pipelines/warehouse/db.py with the first configured application for the rows
-- already there. raw.batches, raw.statistics_hourly and raw.gap_fill_searches declare it in
-- raw.sql and are rebuilt instead (see db.py's `_rebuild`).
-- A record's key is (sms_sdk_app_id, record_key): one application's records never deduplicate
-- another's.
alter table raw.send_status add column if not exists sms_sdk_app_id varchar;
alter table raw.reply_status add column if not exists sms_sdk_app_id varchar;
