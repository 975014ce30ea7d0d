-- The replies of application $app we hold whose time lies in [$start_s, $end_s]: a by-number
-- answer is a find only when it is not one of them.
select phone_number, country_code, subscriber_number, sign_name, reply_content, unix_seconds(reply_time) as t
from raw.reply_status
where sms_sdk_app_id = $app and pulled_at >= to_timestamp($start_s) and unix_seconds(reply_time) between $start_s and $end_s
