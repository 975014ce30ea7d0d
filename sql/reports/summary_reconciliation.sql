-- Per day and application, our counts minus the provider's (zero when they agree).
select day, sms_sdk_app_id, submitted_diff, receipts_diff, delivered_diff, failed_diff
from marts.reconciliation_daily
where day between $first_day and $last_day
order by day, sms_sdk_app_id
