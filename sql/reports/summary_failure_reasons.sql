-- The five most frequent (failure description, country) pairs of the days.
select description, iso_code, cast(sum(failed) as bigint) as failed
from marts.failure_reasons_daily
where day between $first_day and $last_day
group by description, iso_code
order by failed desc, description, iso_code
limit 5
