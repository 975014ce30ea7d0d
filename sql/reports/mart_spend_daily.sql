-- Per day: marts.spend_daily's messages, fee and cost summed over the groups (cost per currency
-- would need a currency each: the figures say how many currencies were summed).
select day, count(*) as rows, cast(sum(messages) as bigint) as messages, cast(sum(fee) as bigint) as fee,
       cast(sum(cost) as double) as cost, count(distinct currency) as currencies
from marts.spend_daily
where day between $first_day and $last_day
group by day
order by day
