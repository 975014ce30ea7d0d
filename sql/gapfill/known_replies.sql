-- The replies of application $app we hold whose time lies in [$start_s, $end_s]: a by-number
-- answer is a find only when it is not one of them. A reply pushed while several applications are
-- configured is stored with sms_sdk_app_id '' (the push does not say): it is every application's.
select phone_number, country_code, subscriber_number, sign_name, reply_content, unix_seconds(reply_time) as t
from raw.reply_status
where sms_sdk_app_id in ($app, '') and pulled_at >= to_timestamp($start_s) and unix_seconds(reply_time) between $start_s and $end_s
