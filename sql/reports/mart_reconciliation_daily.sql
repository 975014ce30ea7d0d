-- Metadata of marts.reconciliation_daily for the days.
select sum(submitted_diff), sum(receipts_diff), sum(delivered_diff), sum(failed_diff),
       sum(provider_request_success_count), sum(provider_callback_success_count),
       count(*) filter (provider_hours = 0), count(*) filter (not has_sends_log)
from marts.reconciliation_daily where day between $first_day and $last_day
