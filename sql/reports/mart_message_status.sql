-- Metadata of marts.message_status for the days: messages by outcome.
select count(*) filter (in_sends_log) as submitted,
       count(*) filter (in_sends_log and report_status = 'SUCCESS') as delivered_logged,
       count(*) filter (report_status = 'SUCCESS') as delivered,
       count(*) filter (report_status = 'FAIL') as failed,
       count(*) filter (in_sends_log and report_status is null) as pending,
       count(converted_at) as converted
from marts.message_status where send_date between $first_day and $last_day
