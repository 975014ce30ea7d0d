-- Per day: delivery and conversion over all groups of the day (rates from summed counts).
with delivery as (
    select day, sum(submitted) as submitted, sum(delivered) as delivered, sum(failed) as failed,
           sum(pending) as pending
    from marts.delivery_daily
    where day between $first_day and $last_day
    group by day
),
conversion as (
    select day, sum(conversions) as conversions, sum(replies) as replies, sum(opt_outs) as opt_outs
    from marts.conversion_daily
    where day between $first_day and $last_day
    group by day
)
select d.day, d.submitted, d.delivered, d.failed, d.pending,
       d.delivered / nullif(d.submitted, 0) as delivery_rate,
       coalesce(c.conversions, 0) as conversions,
       coalesce(c.conversions, 0) / nullif(d.delivered, 0) as conversion_rate,
       coalesce(c.replies, 0) as replies, coalesce(c.opt_outs, 0) as opt_outs
from delivery d left join conversion c using (day)
order by d.day
