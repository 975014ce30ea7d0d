-- _new_conversions: conversion events of the days' messages (by SerialNo, as the conversions file has no
-- application), with UTC times.
create temp table _new_conversions as
select m.send_date, c.serial_no, t.t_utc as conversion_time, t.flag as conversion_time_flag, c.source_file, c.source_row, m.sms_sdk_app_id
from _stage_conversions c
join (select sms_sdk_app_id, serial_no, send_date from _new_sends where serial_no <> ''
      union all select sms_sdk_app_id, serial_no, send_date from _stage_orphan_days) m using (serial_no)
left join _stage_times t on t.t_raw = c.conversion_time
