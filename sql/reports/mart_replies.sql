-- Per reply day: marts.replies's replies, those attributed to a message, and opt-outs.
select reply_date as day, count(*) as rows, count(serial_no) as attributed, count(*) filter (is_opt_out) as opt_outs
from marts.replies
where reply_date between $first_day and $last_day
group by reply_date
order by day
