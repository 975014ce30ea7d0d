-- _new_receipts: every receipt of the days' messages: those of the sends log staged just before (_new_sends) and those placed by their first receipt (_stage_orphan_days), with UTC times and
-- normalized numbers.
create temp table _new_receipts as
with received as (
    select r.*, m.send_date from _stage_receipts r
    join (select sms_sdk_app_id, serial_no, send_date from _new_sends where serial_no <> '') m
      using (sms_sdk_app_id, serial_no)
    union all by name
    select o.*, m.send_date from _stage_orphans o join _stage_orphan_days m using (sms_sdk_app_id, serial_no)
)
select r.send_date, r.serial_no, r.record_key, r.phone_number, p.phone_e164, p.country_code, p.iso_code, p.phone_valid,
       r.report_status, r.description, t.t_utc as user_receive_time, t.flag as receive_time_flag, r.session_context, r.action, r.pulled_at, r.sms_sdk_app_id
from received r
left join _stage_times t on t.t_raw = r.user_receive_time
left join _stage_phones p on p.phone_number is not distinct from r.phone_number
                         and p.country_code_in is not distinct from r.country_code
                         and p.subscriber_number is not distinct from r.subscriber_number
