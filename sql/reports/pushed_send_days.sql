-- The send days (in $timezone) of the messages whose receipts came in the push batches $batch_ids:
-- the sends log's day of each, or, for a message it does not know, the day of its first receipt.
with serials as (
    select distinct serial_no from raw.send_status where batch_id in (select unnest($batch_ids))
),
sent as (
    select s.serial_no, min(unix_seconds(s.send_time)) as at_s
    from raw.sends s where s.serial_no in (select serial_no from serials) and s.send_time > 0
    group by s.serial_no
),
first_receipt as (
    select r.serial_no, min(coalesce(unix_seconds(nullif(r.user_receive_time, 0)), epoch(r.pulled_at))) as at_s
    from raw.send_status r where r.serial_no in (select serial_no from serials)
    group by r.serial_no
)
select distinct cast(timezone($timezone, to_timestamp(coalesce(sent.at_s, first_receipt.at_s))) as date) as day
from serials
left join sent using (serial_no)
left join first_receipt using (serial_no)
where coalesce(sent.at_s, first_receipt.at_s) is not null
order by day
