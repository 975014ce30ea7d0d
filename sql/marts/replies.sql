-- marts.replies for the reply days [$first_day, $last_day]: each reply attributed to the latest
-- message delivered to the same number (same signature when both are known) and sent in the
-- $attribution_hours hours before it; opt-outs are replies that are one of $opt_out_words. A reply
-- is (sms_sdk_app_id, record_key), and answers a message of its own application only; a reply pushed
-- without one (staging's null: the reply callback names none) answers the latest message of any, and
-- takes that message's application (null when it answers none).
-- The number: `phone_e164`, or with SMSLEDGER_PII_KEY its token and masked form from
-- staging.phone_tokens, the reply matched to its message by token, and the record key (which
-- holds the number) replaced by its token from _reply_keys (pipelines/warehouse/marts.py keeps
-- the lines tagged `numbers` or `tokens`).
insert into marts.replies (
    phone_e164, record_key,  -- numbers
    phone_token, phone_masked, record_key,  -- tokens
    sms_sdk_app_id, reply_date, country_code, iso_code, sign_name, extend_code, reply_content, reply_time,
    serial_no, is_opt_out
)
with replies as (
    select r.*,
           r.phone_e164 as phone_id, r.record_key as mart_key  -- numbers
           tok.phone_token as phone_id, tok.phone_masked, k.mart_key  -- tokens
    from staging.replies r
    left join (select phone_e164, min(phone_token) as phone_token, min(phone_masked) as phone_masked from staging.phone_tokens where key_id = $key_id and phone_e164 in (select phone_e164 from staging.replies where reply_date between $first_day and $last_day) group by phone_e164) tok on tok.phone_e164 = r.phone_e164  -- tokens
    left join _reply_keys k on k.sms_sdk_app_id is not distinct from r.sms_sdk_app_id and k.record_key = r.record_key  -- tokens
    where r.reply_date between $first_day and $last_day
),
delivered as (
    select sms_sdk_app_id, serial_no, sign_name, coalesce(sent_at, user_receive_time) as sent_at,
           phone_e164 as phone_id  -- numbers
           phone_token as phone_id  -- tokens
    from marts.message_status
    where report_status = 'SUCCESS'
      and phone_id in (select phone_id from replies)
      and send_date between $first_day - to_days(cast(ceil($attribution_hours / 24) + 1 as integer)) and $last_day
),
candidates as (
    select r.sms_sdk_app_id, r.record_key, d.serial_no, d.sms_sdk_app_id as message_app, row_number() over (
        partition by r.sms_sdk_app_id, r.record_key order by d.sent_at desc, d.serial_no desc
    ) as rank_latest
    from replies r
    join delivered d
      on (d.sms_sdk_app_id = r.sms_sdk_app_id or r.sms_sdk_app_id is null)
     and d.phone_id = r.phone_id
     and (r.sign_name is null or r.sign_name = '' or d.sign_name is null or d.sign_name = r.sign_name)
     and d.sent_at <= r.reply_time
     and d.sent_at > r.reply_time - to_hours(cast($attribution_hours as integer))
)
select
    r.phone_id, r.mart_key,  -- numbers
    r.phone_id, r.phone_masked, r.mart_key,  -- tokens
    coalesce(r.sms_sdk_app_id, c.message_app), r.reply_date, r.country_code, r.iso_code, r.sign_name, r.extend_code,
    r.reply_content, r.reply_time, c.serial_no, is_opt_out(r.reply_content, $opt_out_words) as is_opt_out
from replies r
left join candidates c
  on c.sms_sdk_app_id is not distinct from r.sms_sdk_app_id and c.record_key = r.record_key and c.rank_latest = 1
