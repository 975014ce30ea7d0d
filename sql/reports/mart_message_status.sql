-- Per day: marts.message_status's messages by outcome (the materialization's metadata of each
-- partition). delivery_rate is over sends-log messages, like delivery_daily's.
select send_date as day,
       count(*) as rows,
       count(*) filter (in_sends_log) as submitted,
       count(*) filter (report_status = 'SUCCESS') as delivered,
       count(*) filter (report_status = 'FAIL') as failed,
       count(*) filter (in_sends_log and report_status is null) as pending,
       count(converted_at) as converted,
       count(*) filter (in_sends_log and report_status = 'SUCCESS') / nullif(count(*) filter (in_sends_log), 0)
           as delivery_rate
from marts.message_status
where send_date between $first_day and $last_day
group by send_date
order by day
