-- Sends-log rows whose SendTime falls in [$start_s, $end_s) (seconds, or milliseconds: the forms
-- near_window reads), and those near it that are later than $now_s (they may be too far in the
-- future to be usable: their converted time says so, and they are counted). The exact day is decided after
-- normalization; rows of the neighbouring days are not read. A row without SmsSdkAppId is the first
-- configured application's ($first_app).
select serial_no, phone_number, fee, session_context, code, message, iso_code, send_time,
       coalesce(nullif(sms_sdk_app_id, ''), $first_app) as sms_sdk_app_id, template_id, sign_name, source_file, source_row
from raw.sends
where send_time between $start_s::bigint and $end_s::bigint - 1
   or send_time between $start_s::bigint * 1000 and $end_s::bigint * 1000 - 1
   or (near_window(send_time, $start_s::bigint, $end_s::bigint) and unix_seconds(send_time) > $now_s::bigint)
