-- Sends-log messages that may have been sent in [$start_s, $end_s) (seconds or milliseconds; the
-- exact day is decided after normalization) whose receipts may be missing from raw:
--   * messages without any receipt (pending, or their receipt was lost), and
--   * messages with only failure receipts when a receipt-queue pull was indeterminate after the
--     latest of them: a later receipt (a carrier retry that succeeded) may have been in it.
-- Messages already delivered are complete: asking for them would cost requests for nothing.
with known as (
    select serial_no,
           bool_or(report_status = 'SUCCESS') as delivered,
           -- a receive time in milliseconds (a dirty record) compared as seconds
           max(unix_seconds(user_receive_time)) as last_receipt_s
    from raw.send_status
    group by serial_no
),
last_lost_pull as (
    select max(pulled_at) as pulled_at
    from raw.batches
    where outcome = 'indeterminate' and action = 'PullSmsSendStatus'
)
select s.serial_no, s.phone_number, s.iso_code, s.send_time
from raw.sends s
left join known k using (serial_no)
cross join last_lost_pull l
where s.code = 'Ok' and s.serial_no is not null and s.serial_no <> ''
  and near_window(s.send_time, $start_s::bigint, $end_s::bigint)
  and (k.serial_no is null
       or (not k.delivered and l.pulled_at >= to_timestamp(coalesce(k.last_receipt_s, 0))))
