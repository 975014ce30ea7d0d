-- marts.conversion_daily for the days [$first_day, $last_day], per application, from marts.message_status and
-- marts.replies. Replies count under the day and group of the message they are attributed to,
-- whatever day they arrived: every reply day is read, so a message's replies that arrive later (up
-- to the reply window after sending) appear when its day is rebuilt again (the lookback window).
insert into marts.conversion_daily (
    sms_sdk_app_id, day, iso_code, sign_name, template_id, delivered, conversions, conversion_rate,
    median_time_to_convert_s, replies, reply_rate, opt_outs
)
with messages as (
    select * from marts.message_status where send_date between $first_day and $last_day
),
answered as (
    select sms_sdk_app_id, serial_no, count(*) as replies, count(*) filter (is_opt_out) as opt_outs
    from marts.replies
    where serial_no in (select serial_no from messages)
    group by sms_sdk_app_id, serial_no
),
counts as (
    select
        m.sms_sdk_app_id,
        m.send_date as day,
        m.iso_code,
        m.sign_name,
        m.template_id,
        count(*) filter (m.report_status = 'SUCCESS') as delivered,
        count(m.converted_at) as conversions,
        quantile_cont(epoch(m.converted_at) - epoch(m.sent_at), 0.5) as median_time_to_convert_s,
        cast(coalesce(sum(a.replies), 0) as bigint) as replies,
        cast(coalesce(sum(a.opt_outs), 0) as bigint) as opt_outs
    from messages m
    left join answered a using (sms_sdk_app_id, serial_no)
    group by m.sms_sdk_app_id, m.send_date, m.iso_code, m.sign_name, m.template_id
)
select
    sms_sdk_app_id, day, iso_code, sign_name, template_id, delivered, conversions,
    conversions / nullif(delivered, 0) as conversion_rate,
    median_time_to_convert_s, replies,
    replies / nullif(delivered, 0) as reply_rate,
    opt_outs
from counts
