-- marts.spend_daily for the days [$first_day, $last_day] from marts.message_status: the sends log's
-- accepted messages per send day, application, region, signature and template, their fee and cost.
insert into marts.spend_daily (day, sms_sdk_app_id, iso_code, sign_name, template_id, messages, fee, cost, currency)
select
    send_date as day, sms_sdk_app_id, iso_code, sign_name, template_id,
    count(*) as messages,
    cast(sum(fee) as bigint) as fee,
    cast(sum(cost) as decimal(18, 6)) as cost,
    min(currency) as currency           -- a group is one region and day: one price
from marts.message_status
where send_date between $first_day and $last_day and in_sends_log
group by all
