-- marts.failure_reasons_daily for the days [$first_day, $last_day]: messages whose final receipt
-- is FAIL, by application, send day, country and the receipt's description.
insert into marts.failure_reasons_daily (sms_sdk_app_id, day, iso_code, description, failed)
select sms_sdk_app_id, send_date as day, iso_code, description, count(*) as failed
from marts.message_status
where send_date between $first_day and $last_day and report_status = 'FAIL'
group by sms_sdk_app_id, send_date, iso_code, description
