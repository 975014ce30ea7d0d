-- The distinct times and numbers of the window's replies (_stage_replies), for polars to convert
-- and normalize (pipelines/warehouse/staging.py).
create temp table _stage_raw_times as
select distinct reply_time as t_raw from _stage_replies where reply_time is not null;

create temp table _phone_keys as
select distinct phone_number, country_code as country_code_in, subscriber_number from _stage_replies;
