-- The receipts and conversions of the messages of the window being staged (_stage_sends: sends-log
-- rows of the window; _stage_orphans: receipts of messages the log does not know), copied once so
-- that what follows joins with them, not with the whole raw tables.
create temp table _stage_receipts as
select r.* from raw.send_status r
semi join (select sms_sdk_app_id, serial_no from _stage_sends where serial_no <> '') s using (sms_sdk_app_id, serial_no);

create temp table _stage_conversions as
select c.serial_no, c.conversion_time, c.source_file, c.source_row from raw.conversions c
semi join (select serial_no from _stage_sends union all select serial_no from _stage_orphans) s using (serial_no);

-- Each distinct time of these rows once, for polars to convert (pipelines/warehouse/staging.py).
create temp table _stage_raw_times as
select distinct t_raw from (
    select send_time as t_raw from _stage_sends
    union all select user_receive_time from _stage_receipts
    union all select user_receive_time from _stage_orphans
    union all select conversion_time from _stage_conversions
) where t_raw is not null;

-- Each distinct number as the rows write it, for staging.phone_numbers (the sends log has no
-- calling code or subscriber number of its own: its IsoCode is replaced by the number's).
create temp table _phone_keys as
select distinct phone_number, country_code_in, subscriber_number from (
    select phone_number, null::varchar as country_code_in, null::varchar as subscriber_number from _stage_sends
    union all select phone_number, country_code, subscriber_number from _stage_receipts
    union all select phone_number, country_code, subscriber_number from _stage_orphans
);
