-- Every receipt of the messages that the sends log does not know and that have a receipt (or,
-- without a usable receive time, a pull) near [$start, $end): their day is the day of their first
-- receipt, decided after normalization. The messages near the window are found first, so that
-- only they are looked up in the sends log (not every receipt of the table).
-- A message is (application, serial_no): a sends-log row without SmsSdkAppId is $first_app's.
with near as (
    select distinct sms_sdk_app_id, serial_no
    from raw.send_status
    where near_window(user_receive_time, $start_s::bigint, $end_s::bigint)
       or pulled_at between $start - interval 1 day and $end + interval 1 day
),
orphan as (
    select n.sms_sdk_app_id, n.serial_no from near n
    anti join (select coalesce(nullif(sms_sdk_app_id, ''), $first_app) as sms_sdk_app_id, serial_no
               from raw.sends where serial_no is not null and serial_no <> '') s using (sms_sdk_app_id, serial_no)
)
select r.* from raw.send_status r semi join orphan o using (sms_sdk_app_id, serial_no)
