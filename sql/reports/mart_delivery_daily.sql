-- Metadata of marts.delivery_daily for the days: the counts summed over the groups, and the
-- latency percentiles over the delivered messages themselves (percentiles do not add up).
with totals as (
    select sum(submitted) as submitted, sum(receipts) as receipts, sum(delivered) as delivered,
           sum(failed) as failed, sum(pending) as pending,
           sum(delivered) filter (submitted is not null) as delivered_logged, sum(fee) as fee
    from marts.delivery_daily where day between $first_day and $last_day
),
latency as (
    select quantile_cont(latency_seconds, 0.5) as p50, quantile_cont(latency_seconds, 0.95) as p95
    from marts.message_status
    where send_date between $first_day and $last_day and report_status = 'SUCCESS'
)
select * from totals, latency
