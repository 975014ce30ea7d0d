-- Metadata of marts.provider_statistics_hourly for the UTC hours [$start, $end).
select sum(request_success_count), sum(callback_count), sum(callback_success_count), sum(callback_fail_count)
from marts.provider_statistics_hourly where hour >= $start and hour < $end
