-- The five most frequent failure descriptions of the days, with the country they hit most.
with by_reason as (
    select description, iso_code, sum(failed) as failed
    from marts.failure_reasons_daily
    where day between $first_day and $last_day
    group by description, iso_code
),
ranked as (
    select description, arg_max(iso_code, failed) as iso_code, sum(failed) as failed
    from by_reason group by description
)
select description, iso_code, failed from ranked order by failed desc, description limit 5
