-- What the warehouse says about receipts, from a sample of the sends-log messages sent between
-- $from_s and $to_s (old enough that most of their receipts came): how long each receipt took
-- (per delay bin), how many messages got no receipt, and how often a failure receipt was followed
-- by another one (a carrier retry).
with sent as (
    select serial_no, unix_seconds(send_time) as sent_s
    from raw.sends
    where code = 'Ok' and serial_no <> ''
      and (send_time between $from_s and $to_s or send_time between $from_s::bigint * 1000 and $to_s::bigint * 1000 + 999)
),
sampled as (select * from sent using sample reservoir({sample} rows) repeatable (7)),
receipts as (
    select r.serial_no, r.report_status, unix_seconds(r.user_receive_time) as t
    from raw.send_status r
    where r.pulled_at >= to_timestamp($from_s)
      and r.serial_no in (select serial_no from sampled)
      and unix_seconds(r.user_receive_time) between $from_s and $usable_to_s
),
per_message as (
    select s.serial_no, count(r.serial_no) as receipts,
           min(r.t) filter (where r.report_status = 'FAIL') as first_fail_t,
           max(r.t) as last_t
    from sampled s left join receipts r using (serial_no)
    group by s.serial_no
)
select 'delay' as what, delay_bin(r.t - s.sent_s, $bins) as bin, count(*) as n
from sampled s join receipts r using (serial_no)
group by all
union all
select 'messages', null, count(*) from per_message
union all
select 'without_receipt', null, count(*) filter (where receipts = 0) from per_message
union all
select 'failed', null, count(*) filter (where first_fail_t is not null) from per_message
union all
select 'failed_then_more', null, count(*) filter (where first_fail_t < last_t) from per_message
