-- Sends-log messages of application $app (or of none named) whose receipt may have been in a lost pull whose records lie in
-- [$start_s, $end_s]: sent (Code Ok) between $from_s and the window's end and not delivered (no
-- receipt, or only failure receipts: a later receipt may still change their state), ranked by
-- the probability that their next receipt fell in the window, given that we have not seen it:
--   P(in window) / (P(in window) + P(still to come) + P(none will come)),
-- from the delay distribution $edges (receipt time minus send time), the share of messages that
-- never get a receipt ($no_receipt) and, after a failure receipt, the share of failures followed
-- by another receipt ($followup); a later receipt's delay is longer than the failure's.
with sent as (
    select serial_no, any_value(phone_number) as phone_number, min(unix_seconds(send_time)) as sent_s
    from raw.sends
    where code = 'Ok' and serial_no <> '' and (sms_sdk_app_id = $app or sms_sdk_app_id is null)
      and (send_time between $from_s and $end_s or send_time between $from_s::bigint * 1000 and $end_s::bigint * 1000 + 999)
    group by serial_no
),
receipts as (
    select serial_no, bool_or(report_status = 'SUCCESS') as delivered,
           max(unix_seconds(user_receive_time)) as last_t
    from raw.send_status
    where sms_sdk_app_id = $app and pulled_at >= to_timestamp($from_s) and serial_no in (select serial_no from sent)
    group by serial_no
),
shares as (
    select s.serial_no, s.phone_number, s.sent_s,
           delay_cdf($edges, $start_s - s.sent_s) as f_start,
           delay_cdf($edges, $end_s - s.sent_s) as f_end,
           delay_cdf($edges, $now_s - s.sent_s) as f_now,
           case when r.serial_no is null then 0.0 else delay_cdf($edges, r.last_t - s.sent_s) end as f_seen,
           case when r.serial_no is null then 1 - $no_receipt else $followup end as prior
    from sent s left join receipts r using (serial_no)
    where not coalesce(r.delivered, false)
),
scored as (
    select serial_no, phone_number, sent_s,
           prior * greatest(f_end - greatest(f_start, f_seen), 0) as in_window,
           prior * greatest(1 - greatest(f_now, f_seen), 0) as to_come,
           (1 - prior) * (1 - f_seen) as never
    from shares
    where f_seen < 1
)
select serial_no, phone_number, sent_s, in_window / (in_window + to_come + never) as probability
from scored
where in_window > 0
order by probability desc, sent_s desc, serial_no
limit $limit
