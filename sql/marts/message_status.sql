-- marts.message_status for the days [$first_day, $last_day] from staging; a conversion counts
-- within $attribution_days days after sending. The final receipt of a message is the latest by
-- receive time: an older receipt never overwrites a newer one, and a receipt whose time is
-- unusable (null in staging: 0, negative or far in the future in the feed) has no place in that
-- order, so it never displaces one with a usable time. One exception follows from what a receipt
-- means: a delivery is final (carriers report failures before a successful retry, never after a
-- delivery), so a SUCCESS outranks every FAIL, whatever their times; its receive time and latency
-- stay unknown when its own time is unusable. A message is (sms_sdk_app_id, serial_no): receipts
-- and conversions join their message within its application. Its cost is its fee times the unit
-- price of raw.prices for its region (iso_code) and type (CN: mainland, else international) with
-- the latest valid_from on or before its send_date; null without a fee or such a price.
-- Its number: `phone_e164`, or with SMSLEDGER_PII_KEY its token and masked form from
-- staging.phone_tokens (pipelines/warehouse/marts.py keeps one of the lines tagged `numbers` or
-- `tokens`; min(): two lake writers may both have added a number's token, equal).
insert into marts.message_status (
    cost, currency,
    sms_sdk_app_id,
    phone_e164,  -- numbers
    phone_token, phone_masked,  -- tokens
    send_date, serial_no, country_code, iso_code, sign_name, template_id, session_context,
    sent_at, fee, report_status, description, user_receive_time, latency_seconds, converted_at,
    receipts, in_sends_log
)
with logged as (
    select * from staging.sends
    where send_date between $first_day and $last_day and serial_no is not null and serial_no <> ''
      and code = 'Ok'
),
ranked as (
    select *, row_number() over (
        partition by sms_sdk_app_id, serial_no
        order by report_status = 'SUCCESS' desc nulls last, user_receive_time desc nulls last,
                 pulled_at desc, record_key desc
    ) as rank_newest
    from staging.receipts
    where send_date between $first_day and $last_day
),
final as (select * from ranked where rank_newest = 1),
receipt_counts as (
    select sms_sdk_app_id, serial_no, count(*) as receipts
    from staging.receipts where send_date between $first_day and $last_day
    group by sms_sdk_app_id, serial_no
),
messages as (
    select
        coalesce(l.sms_sdk_app_id, f.sms_sdk_app_id) as sms_sdk_app_id,
        coalesce(l.send_date, f.send_date) as send_date,
        coalesce(l.serial_no, f.serial_no) as serial_no,
        coalesce(l.phone_e164, f.phone_e164) as phone_e164,
        coalesce(l.country_code, f.country_code) as country_code,
        coalesce(l.iso_code, f.iso_code) as iso_code,
        l.sign_name,
        l.template_id,
        coalesce(l.session_context, nullif(f.session_context, '')) as session_context,
        l.sent_at,
        l.fee,
        f.report_status,
        f.description,
        f.user_receive_time,
        l.serial_no is not null as in_sends_log
    from logged l
    full outer join final f on f.sms_sdk_app_id = l.sms_sdk_app_id and f.serial_no = l.serial_no
),
converted as (
    select m.sms_sdk_app_id, m.serial_no, min(c.conversion_time) as converted_at
    from messages m
    join staging.conversions c
      on c.sms_sdk_app_id = m.sms_sdk_app_id and c.serial_no = m.serial_no
     and c.send_date between $first_day and $last_day
    where c.conversion_time >= coalesce(m.sent_at, m.user_receive_time)
      and c.conversion_time < coalesce(m.sent_at, m.user_receive_time) + to_days(cast($attribution_days as integer))
    group by m.sms_sdk_app_id, m.serial_no
),
priced as (
    select m.*, p.unit_price, p.currency
    from messages m
    asof left join raw.prices p
      on p.region = m.iso_code
     and p.message_type = case when m.iso_code = 'CN' then 'mainland' else 'international' end
     and m.send_date >= p.valid_from
)
-- the tokens of the slice's numbers only (not every number the key ever tokenized)
, tokens as (select phone_e164, min(phone_token) as phone_token, min(phone_masked) as phone_masked from staging.phone_tokens where key_id = $key_id and phone_e164 in (select phone_e164 from messages) group by phone_e164)  -- tokens
select
    cast(m.fee * m.unit_price as decimal(18, 6)), m.currency,
    m.sms_sdk_app_id,
    m.phone_e164,  -- numbers
    tok.phone_token, tok.phone_masked,  -- tokens
    m.send_date, m.serial_no, m.country_code, m.iso_code, m.sign_name, m.template_id,
    m.session_context, m.sent_at, m.fee, m.report_status, m.description, m.user_receive_time,
    case when m.report_status is not null
         then epoch(m.user_receive_time) - epoch(m.sent_at) end as latency_seconds,
    c.converted_at,
    coalesce(rc.receipts, 0) as receipts,
    m.in_sends_log
from priced m
left join converted c using (sms_sdk_app_id, serial_no)
left join receipt_counts rc using (sms_sdk_app_id, serial_no)
left join tokens tok on tok.phone_e164 = m.phone_e164  -- tokens
