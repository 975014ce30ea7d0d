-- _new_sends: the window's sends-log rows of the days, with UTC times and normalized numbers. The same
-- (application, SerialNo) in two files (an overlapping log rotation) is one message: the row
-- read first. Rows without a SerialNo (failed sends) are each kept. Rows whose time is unusable
-- are left out (counted by the caller).
create temp table _new_sends as
select t.t_day as send_date, s.serial_no, s.phone_number, p.phone_e164, p.country_code, p.iso_code, p.phone_valid,
       s.sign_name, s.template_id, s.session_context, t.t_utc as sent_at, s.fee, s.code, s.message, s.sms_sdk_app_id,
       s.source_file, s.source_row
from _stage_sends s
join _stage_times t on t.t_raw = s.send_time
left join _stage_phones p on p.phone_number is not distinct from s.phone_number and p.country_code_in is null
                         and p.subscriber_number is null
where t.t_utc is not null and t.t_day between $first_day and $last_day
qualify s.serial_no is null or s.serial_no = ''
     or row_number() over (partition by s.sms_sdk_app_id, s.serial_no order by s.source_file, s.source_row) = 1
