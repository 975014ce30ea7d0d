-- marts.provider_statistics_hourly for the UTC instants [$start, $end) of a range of partition
-- days: the hours that start in them, per application, each labelled with its day in $timezone.
insert into marts.provider_statistics_hourly (
    sms_sdk_app_id, hour, day, provider_hour, fee_count, request_count, request_success_count, callback_count,
    callback_success_count, callback_fail_count, callback_request_success_count, internal_error_count,
    invalid_number_count, shutdown_error_count, blacklist_count, frequency_limit_count, pulled_at
)
select
    sms_sdk_app_id, hour, cast(timezone($timezone, hour) as date) as day, provider_hour, fee_count, request_count,
    request_success_count, callback_count, callback_success_count, callback_fail_count,
    callback_request_success_count, internal_error_count, invalid_number_count, shutdown_error_count,
    blacklist_count, frequency_limit_count, pulled_at
from raw.statistics_hourly
where hour >= $start and hour < $end
