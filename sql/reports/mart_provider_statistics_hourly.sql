-- Per partition day (the hours that start in it): the provider's counters, and its delivery rate.
select day, count(*) as rows, cast(sum(request_success_count) as bigint) as provider_request_success_count,
       cast(sum(callback_count) as bigint) as provider_callback_count,
       cast(sum(callback_success_count) as bigint) as provider_callback_success_count,
       cast(sum(callback_fail_count) as bigint) as provider_callback_fail_count,
       sum(callback_success_count) / nullif(sum(request_success_count), 0) as provider_delivery_rate
from marts.provider_statistics_hourly
where hour >= $start and hour < $end
group by day
order by day
