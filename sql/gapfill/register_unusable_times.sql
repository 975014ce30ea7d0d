-- Receipts whose UserReceiveTime is unusable (0, negative, junk from a dirty feed) pulled since
-- $since_s, for which no receipt of the same message and status with a usable time is known: one
-- search each, asking the message's number once over the 4 days after it was sent (without a
-- sends-log row, the 4 days before the receipt was pulled), so that the real time comes back.
with unusable as (
    select r.record_key, r.serial_no, r.report_status, r.pulled_at
    from raw.send_status r
    where r.pulled_at >= to_timestamp($since_s)
      and (r.user_receive_time is null or unix_seconds(r.user_receive_time) not between $usable_from_s and $usable_to_s)
      and not exists (
          select 1 from raw.send_status k
          where k.pulled_at >= to_timestamp($since_s - 7 * 86400)
            and k.serial_no = r.serial_no and k.report_status is not distinct from r.report_status
            and unix_seconds(k.user_receive_time) between $usable_from_s and $usable_to_s)
),
sent as (
    select serial_no, min(unix_seconds(send_time)) as sent_s
    from raw.sends
    where serial_no in (select serial_no from unusable) and send_time > 0
    group by serial_no
)
insert into raw.gap_fill_searches (search_id, reason, action, lost_at, window_start, window_end, capacity,
                                   max_calls, outcome)
select 'unusable_time|' || u.record_key, 'unusable_receipt_time', 'PullSmsSendStatusByPhoneNumber', u.pulled_at,
       coalesce(s.sent_s, epoch(u.pulled_at)::bigint - $span_s),
       coalesce(s.sent_s + $span_s, epoch(u.pulled_at)::bigint),
       1, 1, 'open'
from unusable u left join sent s using (serial_no)
where 'unusable_time|' || u.record_key not in (select search_id from raw.gap_fill_searches)
