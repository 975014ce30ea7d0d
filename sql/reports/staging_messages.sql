-- Per send day: what staging holds for the messages of the day.
with days as (
    select cast(unnest(generate_series(cast($first_day as date), cast($last_day as date), interval 1 day)) as date) as day
),
sends as (
    select send_date as day, count(*) as sends, count(*) filter (not phone_valid) as invalid_numbers
    from staging.sends where send_date between $first_day and $last_day group by send_date
),
receipts as (
    select send_date as day, count(*) as receipts, count(distinct serial_no) as messages_with_receipts,
           count(*) filter (receive_time_flag is not null) as flagged_times
    from staging.receipts where send_date between $first_day and $last_day group by send_date
),
orphans as (
    -- messages the sends log does not know, placed by their first receipt
    select r.send_date as day, count(distinct r.serial_no) as orphan_messages
    from staging.receipts r
    where r.send_date between $first_day and $last_day
      and not exists (select 1 from staging.sends s where s.serial_no = r.serial_no and s.send_date = r.send_date)
    group by r.send_date
),
conversions as (
    select send_date as day, count(*) as conversions
    from staging.conversions where send_date between $first_day and $last_day group by send_date
)
select d.day, coalesce(s.sends, 0) + coalesce(r.receipts, 0) + coalesce(c.conversions, 0) as rows,
       coalesce(s.sends, 0) as sends, coalesce(r.receipts, 0) as receipts,
       coalesce(r.messages_with_receipts, 0) as messages_with_receipts,
       coalesce(o.orphan_messages, 0) as orphan_messages, coalesce(c.conversions, 0) as conversions,
       coalesce(r.flagged_times, 0) as flagged_times, coalesce(s.invalid_numbers, 0) as invalid_numbers
from days d
left join sends s using (day)
left join receipts r using (day)
left join orphans o using (day)
left join conversions c using (day)
order by day
