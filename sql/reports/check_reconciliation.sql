-- Per day and application, our counts beside the provider's, for the check matches_provider_statistics.
select day, sms_sdk_app_id, has_sends_log, provider_hours,
       submitted, provider_request_success_count,
       receipts, provider_callback_count,
       delivered, provider_callback_success_count,
       failed, provider_callback_fail_count
from marts.reconciliation_daily
where day between $first_day and $last_day
order by day, sms_sdk_app_id
