-- Per day: marts.delivery_daily's counts summed over the groups, rates from those sums, and the
-- latency percentiles over the delivered messages themselves (percentiles do not add up).
with totals as (
    select day, count(*) as rows, sum(submitted) as submitted, sum(receipts) as receipts,
           sum(delivered) as delivered, sum(failed) as failed, sum(pending) as pending,
           sum(delivered) filter (submitted is not null) as delivered_logged, sum(fee) as fee
    from marts.delivery_daily where day between $first_day and $last_day
    group by day
),
latency as (
    select send_date as day, quantile_cont(latency_seconds, 0.5) as latency_p50_s,
           quantile_cont(latency_seconds, 0.95) as latency_p95_s
    from marts.message_status
    where send_date between $first_day and $last_day and report_status = 'SUCCESS'
    group by send_date
)
select t.day, t.rows, cast(t.submitted as bigint) as submitted, cast(t.receipts as bigint) as receipts,
       cast(t.delivered as bigint) as delivered, cast(t.failed as bigint) as failed,
       cast(t.pending as bigint) as pending,
       t.delivered_logged / nullif(t.submitted, 0) as delivery_rate,
       t.delivered / nullif(t.delivered + t.failed, 0) as delivered_of_receipts,
       (t.submitted - t.pending) / nullif(t.submitted, 0) as receipt_coverage,
       l.latency_p50_s, l.latency_p95_s, cast(t.fee as bigint) as fee
from totals t left join latency l using (day)
order by day
