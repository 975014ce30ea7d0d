-- Per day, our counts minus the provider's (zero when they agree).
select day, submitted_diff, receipts_diff, delivered_diff, failed_diff
from marts.reconciliation_daily
where day between $first_day and $last_day
order by day
