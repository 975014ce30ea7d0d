-- Per day: our counts minus the provider's, as marts.reconciliation_daily has them, summed over the
-- applications (one row each); the provider's delivery rate from the summed counts.
select day, count(*) as rows, cast(sum(submitted_diff) as bigint) as submitted_diff,
       cast(sum(receipts_diff) as bigint) as receipts_diff, cast(sum(delivered_diff) as bigint) as delivered_diff,
       cast(sum(failed_diff) as bigint) as failed_diff,
       sum(provider_callback_success_count) / nullif(sum(provider_request_success_count), 0) as provider_delivery_rate,
       cast(sum(provider_hours) as bigint) as provider_hours, bool_or(has_sends_log) as has_sends_log
from marts.reconciliation_daily
where day between $first_day and $last_day
group by day
order by day
