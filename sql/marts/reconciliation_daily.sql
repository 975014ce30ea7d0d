-- marts.reconciliation_daily for the days [$first_day, $last_day]: one row per day, our counts
-- (marts.message_status by send day) beside the provider's (marts.provider_statistics_hourly, the
-- hours of the day; the provider buckets messages by send hour, so the two are comparable).
-- `submitted` needs the sends log: on a day without sends-log messages it and its difference
-- are null, and so are the other differences: without a sends log our messages are placed by the
-- day of their first receipt while the provider counts by send hour, so they are not comparable.
-- Our delivery_rate is that of the sends-log messages. Provider columns are null on a day without
-- statistics hours. One row per day and application: each application's counts against its own
-- statistics, for every application seen in the days (messages or statistics) and the first
-- configured one ($first_app), so a day without data still has its row.
insert into marts.reconciliation_daily (
    sms_sdk_app_id, day, has_sends_log, submitted, provider_request_success_count, submitted_diff,
    receipts, provider_callback_count, receipts_diff, delivered, provider_callback_success_count,
    delivered_diff, failed, provider_callback_fail_count, failed_diff, delivery_rate,
    provider_delivery_rate, provider_hours
)
with days as (
    select cast(unnest(generate_series(cast($first_day as date), cast($last_day as date), interval 1 day)) as date) as day
),
apps as (
    select $first_app::varchar as sms_sdk_app_id
    union
    select sms_sdk_app_id from marts.message_status where send_date between $first_day and $last_day
    union
    select sms_sdk_app_id from marts.provider_statistics_hourly where day between $first_day and $last_day
),
ours as (
    select
        sms_sdk_app_id,
        send_date as day,
        count(*) filter (in_sends_log) as logged,
        count(*) filter (in_sends_log and report_status = 'SUCCESS') as logged_delivered,
        count(*) filter (report_status is not null) as receipts,
        count(*) filter (report_status = 'SUCCESS') as delivered,
        count(*) filter (report_status = 'FAIL') as failed
    from marts.message_status
    where send_date between $first_day and $last_day
    group by sms_sdk_app_id, send_date
),
provider as (
    select
        sms_sdk_app_id,
        day,
        count(*) as hours,
        cast(sum(request_success_count) as bigint) as request_success_count,
        cast(sum(callback_count) as bigint) as callback_count,
        cast(sum(callback_success_count) as bigint) as callback_success_count,
        cast(sum(callback_fail_count) as bigint) as callback_fail_count
    from marts.provider_statistics_hourly
    where day between $first_day and $last_day
    group by sms_sdk_app_id, day
),
joined as (
    select
        a.sms_sdk_app_id,
        d.day,
        coalesce(o.logged, 0) > 0 as has_sends_log,
        nullif(coalesce(o.logged, 0), 0) as submitted,
        o.logged_delivered,
        coalesce(o.receipts, 0) as receipts,
        coalesce(o.delivered, 0) as delivered,
        coalesce(o.failed, 0) as failed,
        p.request_success_count,
        p.callback_count,
        p.callback_success_count,
        p.callback_fail_count,
        coalesce(p.hours, 0) as provider_hours
    from days d
    cross join apps a
    left join ours o on o.day = d.day and o.sms_sdk_app_id = a.sms_sdk_app_id
    left join provider p on p.day = d.day and p.sms_sdk_app_id = a.sms_sdk_app_id
)
select
    sms_sdk_app_id, day, has_sends_log,
    submitted, request_success_count, submitted - request_success_count,
    -- comparable only with a sends log: otherwise our messages are placed by their receipt's day
    receipts, callback_count, case when has_sends_log then receipts - callback_count end,
    delivered, callback_success_count, case when has_sends_log then delivered - callback_success_count end,
    failed, callback_fail_count, case when has_sends_log then failed - callback_fail_count end,
    logged_delivered / submitted,
    callback_success_count / nullif(request_success_count, 0),
    provider_hours
from joined
