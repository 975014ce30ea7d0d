-- Per partition day: the provider hours pulled and their counters.
select cast(timezone($timezone, hour) as date) as day, count(*) as hours,
       cast(sum(request_success_count) as bigint) as provider_request_success_count,
       cast(sum(callback_count) as bigint) as provider_callback_count
from raw.statistics_hourly
where hour >= $start and hour < $end
group by all
order by day
