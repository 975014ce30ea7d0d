-- Sends-log rows whose SendTime may fall in [$start_s, $end_s) (near_window: seconds or
-- milliseconds); the exact day is decided after normalization.
select serial_no, phone_number, fee, session_context, code, message, iso_code, send_time,
       sms_sdk_app_id, template_id, sign_name, source_file, source_row
from raw.sends
where near_window(send_time, $start_s::bigint, $end_s::bigint)
