-- Every receipt of the messages that the sends log does not know and that have a receipt (or,
-- without a usable receive time, a pull) near [$start, $end): their day is the day of their first
-- receipt, decided after normalization.
with orphan as (
    select serial_no from raw.send_status
    where serial_no not in (select serial_no from raw.sends where serial_no is not null and serial_no <> '')
),
near as (
    select distinct r.serial_no
    from raw.send_status r
    where r.serial_no in (select serial_no from orphan)
      and (near_window(r.user_receive_time, $start_s::bigint, $end_s::bigint)
           or r.pulled_at between $start - interval 1 day and $end + interval 1 day)
)
select r.* from raw.send_status r where r.serial_no in (select serial_no from near)
