-- Per day: marts.conversion_daily's counts summed over the groups, and rates from those sums.
select day, count(*) as rows, cast(sum(delivered) as bigint) as delivered,
       cast(sum(conversions) as bigint) as conversions,
       sum(conversions) / nullif(sum(delivered), 0) as conversion_rate,
       cast(sum(replies) as bigint) as replies, sum(replies) / nullif(sum(delivered), 0) as reply_rate,
       cast(sum(opt_outs) as bigint) as opt_outs
from marts.conversion_daily
where day between $first_day and $last_day
group by day
order by day
