-- Receipts whose UserReceiveTime is unusable (0, negative, junk from a dirty feed) pulled since
-- $since_s, for which no receipt of the same message and status with a usable time is known: one
-- search each, asking the message's number once over the 4 days after it was sent (without a
-- sends-log row, the 4 days before the receipt was pulled), so that the real time comes back.
with unusable as (
    select record_key, serial_no, report_status, pulled_at, sms_sdk_app_id
    from raw.send_status
    where pulled_at >= to_timestamp($since_s)
      and (user_receive_time is null or unix_seconds(user_receive_time) not between $usable_from_s and $usable_to_s)
),
resolved as (  -- joined, not `not exists`: with no unusable receipt (the usual case) nothing else is read
    select distinct k.serial_no, k.report_status
    from raw.send_status k join unusable u on k.serial_no = u.serial_no
    where k.pulled_at >= to_timestamp($since_s)
      and unix_seconds(k.user_receive_time) between $usable_from_s and $usable_to_s
),
sent as (
    select s.serial_no, min(unix_seconds(s.send_time)) as sent_s
    from raw.sends s join unusable u on s.serial_no = u.serial_no
    where s.code = 'Ok' and s.send_time > 0
    group by s.serial_no
)
insert into raw.gap_fill_searches (search_id, reason, action, lost_at, window_start, window_end, capacity,
                                   max_calls, outcome, sms_sdk_app_id)
select 'unusable_time|' || u.record_key, 'unusable_receipt_time', 'PullSmsSendStatusByPhoneNumber', u.pulled_at,
       coalesce(s.sent_s, epoch(u.pulled_at)::bigint - $span_s),
       coalesce(s.sent_s + $span_s, epoch(u.pulled_at)::bigint),
       1, 1, 'open', u.sms_sdk_app_id
from unusable u
left join sent s using (serial_no)
where not exists (select 1 from resolved r
                  where r.serial_no = u.serial_no and r.report_status is not distinct from u.report_status)
  and 'unusable_time|' || u.record_key not in (select search_id from raw.gap_fill_searches)
