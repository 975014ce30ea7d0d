-- Staging: normalized (E.164, UTC) records, written per daily partition (send_date / reply_date in
-- SMSLEDGER_TIMEZONE). Idempotent DDL.

-- The sending application's SendSms log, one row per input record, by send day.
create table if not exists staging.sends (
    send_date date not null,
    serial_no varchar,
    phone_number varchar,          -- as recorded
    phone_e164 varchar,
    country_code varchar,
    iso_code varchar,
    phone_valid boolean,
    sign_name varchar,
    template_id varchar,
    session_context varchar,
    sent_at timestamptz,
    fee bigint,
    code varchar,
    message varchar,
    sms_sdk_app_id varchar,        -- the log's SmsSdkAppId; the first configured application's when it has none
    source_file varchar,
    source_row integer
);

-- Distinct receipts of the messages of a day: messages of the sends log sent that day, and
-- messages missing from the log whose first receipt arrived that day.
create table if not exists staging.receipts (
    send_date date not null,
    serial_no varchar not null,
    record_key varchar not null,
    phone_number varchar,
    phone_e164 varchar,
    country_code varchar,
    iso_code varchar,
    phone_valid boolean,
    report_status varchar,
    description varchar,
    user_receive_time timestamptz,
    receive_time_flag varchar,     -- why user_receive_time is null or was converted (zero, milliseconds, ...)
    session_context varchar,
    action varchar,
    pulled_at timestamptz,
    sms_sdk_app_id varchar         -- the application whose queue (or push) gave the receipt
);

-- Distinct replies, by reply day.
create table if not exists staging.replies (
    reply_date date not null,
    record_key varchar not null,
    phone_number varchar,
    phone_e164 varchar,
    country_code varchar,
    iso_code varchar,
    phone_valid boolean,
    sign_name varchar,
    extend_code varchar,
    reply_content varchar,
    reply_time timestamptz,
    reply_time_flag varchar,
    action varchar,
    pulled_at timestamptz,
    sms_sdk_app_id varchar
);

-- Conversion events of the messages of a day (every event; the mart applies the attribution window).
create table if not exists staging.conversions (
    send_date date not null,
    serial_no varchar not null,
    conversion_time timestamptz,
    conversion_time_flag varchar,
    source_file varchar,
    source_row integer,
    sms_sdk_app_id varchar         -- the application of the message converted
);

-- Every distinct phone number as the raw tables write it (PhoneNumber, CountryCode,
-- SubscriberNumber; null where a source has no such field), normalized once (polars and
-- phonenumbers, pipelines/normalize/phones.py) instead of on every row each time a day is staged.
-- `normalizer` is the phonenumbers version that made the row: another version normalizes the
-- number again (its metadata may have changed).
create table if not exists staging.phone_numbers (
    phone_number varchar,
    country_code_in varchar,
    subscriber_number varchar,
    normalizer varchar not null,
    phone_e164 varchar,
    country_code varchar,
    iso_code varchar,
    phone_valid boolean
);

-- The keyed token (pipelines/normalize/pii.py) and masked form of every distinct E.164 number the
-- marts were built from with SMSLEDGER_PII_KEY set, computed once per number and key
-- (`key_id` names the key without revealing it). Empty without a key. Raw numbers: purged with
-- the rows that name them (pipelines/warehouse/retention.py).
create table if not exists staging.phone_tokens (
    phone_e164 varchar not null,
    key_id varchar not null,
    phone_token varchar not null,
    phone_masked varchar
);
