-- Every receipt of the days' messages: those of the sends log staged just before (staging.sends of
-- the days) and those placed by their first receipt (_stage_orphan_days), with UTC times and
-- normalized numbers.
insert into staging.receipts (send_date, serial_no, record_key, phone_number, phone_e164, country_code, iso_code,
                              phone_valid, report_status, description, user_receive_time, receive_time_flag,
                              session_context, action, pulled_at, sms_sdk_app_id)
with received as (
    select r.*, m.send_date from _stage_receipts r
    join (select sms_sdk_app_id, serial_no, send_date from staging.sends
          where send_date between $first_day and $last_day and serial_no <> '') m using (sms_sdk_app_id, serial_no)
    union all by name
    select o.*, m.send_date from _stage_orphans o join _stage_orphan_days m using (sms_sdk_app_id, serial_no)
)
select r.send_date, r.serial_no, r.record_key, r.phone_number, p.phone_e164, p.country_code, p.iso_code, p.phone_valid,
       r.report_status, r.description, t.t_utc, t.flag, r.session_context, r.action, r.pulled_at, r.sms_sdk_app_id
from received r
left join _stage_times t on t.t_raw = r.user_receive_time
left join _stage_phones p on p.phone_number is not distinct from r.phone_number
                         and p.country_code_in is not distinct from r.country_code
                         and p.subscriber_number is not distinct from r.subscriber_number
