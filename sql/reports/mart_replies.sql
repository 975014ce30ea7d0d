-- Metadata of marts.replies for the days: attributed replies and opt-outs.
select count(serial_no) as attributed, count(*) filter (is_opt_out) as opt_outs
from marts.replies where reply_date between $first_day and $last_day
