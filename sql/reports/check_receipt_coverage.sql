-- Coverage of the sends-log messages of each day: submitted - pending have a receipt.
select day, sum(submitted) as submitted, sum(submitted) - sum(pending) as receipted
from marts.delivery_daily
where day between $first_day and $last_day and submitted is not null
group by day order by day
