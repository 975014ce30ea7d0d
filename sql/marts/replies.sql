-- marts.replies for the reply days [$first_day, $last_day]: each reply attributed to the latest
-- message delivered to the same number (same signature when both are known) and sent in the
-- $attribution_hours hours before it; opt-outs are replies that are one of $opt_out_words. A reply
-- is (sms_sdk_app_id, record_key), and answers a message of its own application only; a reply pushed
-- without one (staging's null: the reply callback names none) answers the latest message of any, and
-- takes that message's application (null when it answers none).
insert into marts.replies (
    sms_sdk_app_id, reply_date, phone_e164, country_code, iso_code, sign_name, extend_code, reply_content, reply_time,
    serial_no, is_opt_out, record_key
)
with replies as (
    select * from staging.replies where reply_date between $first_day and $last_day
),
delivered as (
    select sms_sdk_app_id, serial_no, phone_e164, sign_name, coalesce(sent_at, user_receive_time) as sent_at
    from marts.message_status
    where report_status = 'SUCCESS'
      and phone_e164 in (select phone_e164 from replies)
      and send_date between $first_day - to_days(cast(ceil($attribution_hours / 24) + 1 as integer)) and $last_day
),
candidates as (
    select r.sms_sdk_app_id, r.record_key, d.serial_no, d.sms_sdk_app_id as message_app, row_number() over (
        partition by r.sms_sdk_app_id, r.record_key order by d.sent_at desc, d.serial_no desc
    ) as rank_latest
    from replies r
    join delivered d
      on (d.sms_sdk_app_id = r.sms_sdk_app_id or r.sms_sdk_app_id is null)
     and d.phone_e164 = r.phone_e164
     and (r.sign_name is null or r.sign_name = '' or d.sign_name is null or d.sign_name = r.sign_name)
     and d.sent_at <= r.reply_time
     and d.sent_at > r.reply_time - to_hours(cast($attribution_hours as integer))
)
select
    coalesce(r.sms_sdk_app_id, c.message_app), r.reply_date, r.phone_e164, r.country_code, r.iso_code, r.sign_name,
    r.extend_code, r.reply_content, r.reply_time, c.serial_no,
    -- surrounding white space and punctuation, ASCII or not ("退订。", "STOP!"), are ignored
    coalesce(list_contains($opt_out_words, lower(regexp_replace(r.reply_content, '^[\s\p{P}\p{Z}]+|[\s\p{P}\p{Z}]+$', '', 'g'))),
             false) as is_opt_out,
    r.record_key
from replies r
left join candidates c
  on c.sms_sdk_app_id is not distinct from r.sms_sdk_app_id and c.record_key = r.record_key and c.rank_latest = 1
