-- Conversion events of the days' messages (by SerialNo, as the conversions file has no
-- application), with UTC times.
insert into staging.conversions (send_date, serial_no, conversion_time, conversion_time_flag, source_file, source_row,
                                 sms_sdk_app_id)
select m.send_date, c.serial_no, t.t_utc, t.flag, c.source_file, c.source_row, m.sms_sdk_app_id
from _stage_conversions c
join (select sms_sdk_app_id, serial_no, send_date from staging.sends
      where send_date between $first_day and $last_day and serial_no <> ''
      union all select sms_sdk_app_id, serial_no, send_date from _stage_orphan_days) m using (serial_no)
left join _stage_times t on t.t_raw = c.conversion_time
