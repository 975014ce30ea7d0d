-- The message and number behind a receipt without a usable time (a search of reason
-- unusable_receipt_time): the sends log's number, else the receipt's own.
select r.serial_no, r.report_status,
       coalesce((select any_value(s.phone_number) from raw.sends s
                 where s.serial_no = r.serial_no and s.code = 'Ok'
                   and (s.send_time between $window_start - 60 and $window_start + 60
                        or s.send_time between ($window_start::bigint - 60) * 1000 and ($window_start::bigint + 60) * 1000)),
                r.phone_number) as phone_number,
       r.country_code, r.subscriber_number
from raw.send_status r
where r.pulled_at = $lost_at and r.record_key = $record_key and r.sms_sdk_app_id = $app
limit 1
