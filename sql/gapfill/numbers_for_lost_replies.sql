-- Numbers to ask PullSmsReplyStatusByPhoneNumber for: a reply-queue pull was indeterminate (its
-- replies may be lost), and the number had a message delivered in the $window_hours hours before
-- that pull, so a reply to it could have been in the lost response. Messages near [$start_s, $end_s)
-- only; the caller keeps those of its days, so each daily partition asks for its own numbers.
with lost as (
    select pulled_at from raw.batches
    where outcome = 'indeterminate' and action = 'PullSmsReplyStatus'
),
delivered as (
    select s.phone_number, s.iso_code,
           to_timestamp(unix_seconds(s.send_time)) as sent_at
    from raw.sends s
    where s.code = 'Ok'
      and near_window(s.send_time, $start_s::bigint, $end_s::bigint)
      and exists (select 1 from raw.send_status r where r.serial_no = s.serial_no and r.report_status = 'SUCCESS')
)
select d.phone_number, d.iso_code, min(epoch(d.sent_at))::bigint as send_time
from delivered d
join lost l on l.pulled_at between d.sent_at and d.sent_at + to_hours(cast($window_hours as integer))
group by d.phone_number, d.iso_code
