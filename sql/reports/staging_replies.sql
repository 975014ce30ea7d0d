-- Per reply day: the distinct replies staging holds, and those whose time was converted or unusable.
select reply_date as day, count(*) as rows, count(*) filter (reply_time_flag is not null) as flagged_times,
       count(*) filter (not phone_valid) as invalid_numbers
from staging.replies
where reply_date between $first_day and $last_day
group by reply_date
order by day
