-- Per day: our counts minus the provider's, as marts.reconciliation_daily has them.
select day, count(*) as rows, submitted_diff, receipts_diff, delivered_diff, failed_diff,
       provider_delivery_rate, provider_hours, has_sends_log
from marts.reconciliation_daily
where day between $first_day and $last_day
group by all
order by day
