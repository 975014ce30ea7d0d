-- Metadata of marts.failure_reasons_daily for the days: failures, distinct reasons, the top one.
select sum(failed), count(distinct description), arg_max(description, failed)
from (
    select description, sum(failed) as failed from marts.failure_reasons_daily
    where day between $first_day and $last_day group by description
)
