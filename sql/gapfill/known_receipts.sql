-- The receipts of application $app we hold whose time lies in [$start_s, $end_s]: a by-number
-- answer is a find only when it is not one of them.
select serial_no, report_status, unix_seconds(user_receive_time) as t
from raw.send_status
where sms_sdk_app_id = $app and pulled_at >= to_timestamp($start_s) and unix_seconds(user_receive_time) between $start_s and $end_s
