-- Sends-log messages that may have been sent in [$start_s::bigint, $end_s::bigint) (seconds or milliseconds; the
-- exact day is decided after normalization) and that have no receipt in raw yet.
select s.serial_no, s.phone_number, s.iso_code, s.send_time
from raw.sends s
where s.code = 'Ok' and s.serial_no is not null and s.serial_no <> ''
  and (s.send_time between $start_s::bigint - 86400 and $end_s::bigint + 86400
       or s.send_time between ($start_s::bigint - 86400) * 1000 and ($end_s::bigint + 86400) * 1000)
  and not exists (select 1 from raw.send_status r where r.serial_no = s.serial_no)
