-- _new_replies: the window's replies of the days, with UTC times and normalized numbers. A reply pushed without
-- an application ($unsaid: a receiver serving several) that the provider also handed out by pull
-- is that pulled row (both paths key alike); the others get a null application, which
-- marts/replies replaces with the application of the message the reply answers.
create temp table _new_replies as
select t.t_day as reply_date, r.record_key, r.phone_number, p.phone_e164, p.country_code, p.iso_code, p.phone_valid,
       r.sign_name, r.extend_code, r.reply_content, t.t_utc as reply_time, t.flag as reply_time_flag, r.action,
       r.pulled_at, nullif(r.sms_sdk_app_id, $unsaid) as sms_sdk_app_id
from _stage_replies r
join _stage_times t on t.t_raw = r.reply_time
left join _stage_phones p on p.phone_number is not distinct from r.phone_number
                         and p.country_code_in is not distinct from r.country_code
                         and p.subscriber_number is not distinct from r.subscriber_number
where t.t_utc is not null and t.t_day between $first_day and $last_day
  and not (r.sms_sdk_app_id = $unsaid
           and r.record_key in (select record_key from _stage_replies where sms_sdk_app_id <> $unsaid))
