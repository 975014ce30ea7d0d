-- Metadata of marts.conversion_daily for the days.
select sum(delivered) as delivered, sum(conversions) as conversions, sum(replies) as replies,
       sum(opt_outs) as opt_outs
from marts.conversion_daily where day between $first_day and $last_day
