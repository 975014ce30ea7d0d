-- Messages the sends log does not know (_stage_orphans), placed on the day of their first receipt
-- (its receive time, or when it was pulled if that time is unusable), if that day is one of the days.
create temp table _stage_orphan_days as
select sms_sdk_app_id, serial_no, local_date(min(coalesce(t.t_utc, o.pulled_at)), $tz) as send_date
from _stage_orphans o
left join _stage_times t on t.t_raw = o.user_receive_time
group by sms_sdk_app_id, serial_no
having local_date(min(coalesce(t.t_utc, o.pulled_at)), $tz) between $first_day and $last_day
