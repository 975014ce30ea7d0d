-- Per day: failed messages, distinct failure descriptions, and the most frequent one.
with reasons as (
    select day, description, sum(failed) as failed, count(*) as rows
    from marts.failure_reasons_daily
    where day between $first_day and $last_day
    group by day, description
)
select day, cast(sum(rows) as bigint) as rows, cast(sum(failed) as bigint) as failed,
       count(*) as reasons, arg_max(coalesce(description, '(none)'), failed) as top_reason
from reasons
group by day
order by day
