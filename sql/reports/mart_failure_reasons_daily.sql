-- Per day: failed messages, distinct failure descriptions, and the most frequent one
-- (ties go to the first description in order, so the same rows always give the same answer).
with reasons as (
    select day, description, sum(failed) as failed, count(*) as rows
    from marts.failure_reasons_daily
    where day between $first_day and $last_day
    group by day, description
)
select day, cast(sum(rows) as bigint) as rows, cast(sum(failed) as bigint) as failed,
       count(*) as reasons, first(coalesce(description, '(none)') order by failed desc, description nulls last) as top_reason
from reasons
group by day
order by day
