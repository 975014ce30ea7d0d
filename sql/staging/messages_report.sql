-- What build_messages staged, for its report: sends-log rows left out for an unusable time,
-- messages placed by their first receipt, messages, receipts with a converted or unusable time,
-- receipts with an invalid number.
select (select count(*) from _stage_sends s left join _stage_times t on t.t_raw = s.send_time where t.t_utc is null),
       (select count(*) from _stage_orphan_days),
       (select count(*) from _stage_orphan_days)
       + (select count(*) from _new_sends where serial_no <> ''),
       (select count(receive_time_flag) from _new_receipts),
       (select count(*) filter (not phone_valid) from _new_receipts)
