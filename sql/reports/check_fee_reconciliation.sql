-- Per partition day (in $timezone) and application: the fee (billable segments) of the sends
-- log's accepted messages against the provider's SendStatusStatistics.FeeCount of the hours of the
-- day. A sends-log row without an application is the first configured one's ($first_app). `hours`
-- says how many of the day's $hours_per_day hours the provider's statistics cover.
with ours as (
    select coalesce(sms_sdk_app_id, $first_app) as sms_sdk_app_id,
           cast(timezone($timezone, to_timestamp(unix_seconds(send_time))) as date) as day,
           sum(fee) as fee, count(*) as messages
    from raw.sends
    where code = 'Ok' and unix_seconds(send_time) >= $start_s and unix_seconds(send_time) < $end_s
    group by all
),
provider as (
    select sms_sdk_app_id, cast(timezone($timezone, hour) as date) as day,
           sum(fee_count) as fee_count, count(*) as hours
    from raw.statistics_hourly
    where hour >= $start and hour < $end
    group by all
)
select day, sms_sdk_app_id, coalesce(o.messages, 0) as messages, o.fee, p.fee_count, coalesce(p.hours, 0) as hours
from ours o full join provider p using (sms_sdk_app_id, day)
order by day, sms_sdk_app_id
