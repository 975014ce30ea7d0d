-- marts.delivery_daily for the days [$first_day, $last_day] from marts.message_status, per
-- application. A group
-- without sends-log messages (known only by their receipts) has no submitted count, so its
-- pending, delivery_rate and receipt_coverage are null too. pending counts the sends-log messages
-- without a receipt, which is submitted - receipts: messages outside the log have no template, so
-- they share a group with logged ones only if the log itself lacks TemplateId.
insert into marts.delivery_daily (
    sms_sdk_app_id, day, iso_code, sign_name, template_id, submitted, receipts, delivered, failed, pending,
    delivery_rate, delivered_of_receipts, receipt_coverage, latency_p50_s, latency_p95_s, fee, cost, currency
)
with counts as (
    select
        sms_sdk_app_id,
        send_date as day,
        iso_code,
        sign_name,
        template_id,
        nullif(count(*) filter (in_sends_log), 0) as submitted,
        count(*) filter (report_status is not null) as receipts,
        count(*) filter (report_status = 'SUCCESS') as delivered,
        count(*) filter (report_status = 'FAIL') as failed,
        count(*) filter (in_sends_log and report_status is null) as logged_without_receipt,
        quantile_cont(latency_seconds, 0.5) filter (report_status = 'SUCCESS') as latency_p50_s,
        quantile_cont(latency_seconds, 0.95) filter (report_status = 'SUCCESS') as latency_p95_s,
        cast(sum(fee) as bigint) as fee,
        cast(sum(cost) as decimal(18, 6)) as cost,
        min(currency) as currency           -- a group is one region and day: one price
    from marts.message_status
    where send_date between $first_day and $last_day
    group by sms_sdk_app_id, send_date, iso_code, sign_name, template_id
)
select
    sms_sdk_app_id, day, iso_code, sign_name, template_id, submitted, receipts, delivered, failed,
    case when submitted is not null then logged_without_receipt end as pending,
    delivered / submitted as delivery_rate,
    delivered / nullif(delivered + failed, 0) as delivered_of_receipts,
    receipts / submitted as receipt_coverage,
    latency_p50_s, latency_p95_s, fee, cost, currency
from counts
