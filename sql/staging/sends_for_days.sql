-- Sends-log rows whose SendTime may fall in [$start_s::bigint, $end_s::bigint): in seconds or, from a log that
-- wrote milliseconds, in milliseconds. The exact day is decided after normalization; a day of
-- margin on each side covers every partition time zone.
select serial_no, phone_number, fee, session_context, code, message, iso_code, send_time,
       sms_sdk_app_id, template_id, sign_name, source_file, source_row
from raw.sends
where send_time between $start_s::bigint - 86400 and $end_s::bigint + 86400
   or send_time between ($start_s::bigint - 86400) * 1000 and ($end_s::bigint + 86400) * 1000
