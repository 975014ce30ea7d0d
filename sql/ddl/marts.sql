-- Marts: what users query. Daily tables are rewritten per partition day. Idempotent DDL.

-- One row per message (application, SerialNo): the send, its final receipt, its conversion.
create table if not exists marts.message_status (
    send_date date not null,            -- the day it counts under (SMSLEDGER_TIMEZONE)
    serial_no varchar not null,
    phone_e164 varchar,
    country_code varchar,
    iso_code varchar,
    sign_name varchar,
    template_id varchar,
    session_context varchar,
    sent_at timestamptz,
    fee bigint,
    report_status varchar,              -- SUCCESS | FAIL | null while pending
    description varchar,
    user_receive_time timestamptz,
    latency_seconds double,
    converted_at timestamptz,
    receipts integer not null,          -- distinct receipts seen for the message
    in_sends_log boolean not null,
    sms_sdk_app_id varchar,    -- the application; a message is (sms_sdk_app_id, serial_no)
    cost decimal(18, 6),       -- fee x the unit price of raw.prices in force on send_date for its region
                               -- and type (CN: mainland, else international); null without fee or price
    currency varchar           -- the price's
);

-- One row per reply, attributed to the latest message delivered to the same number (and
-- signature, when both are known) in the 72 hours before it.
create table if not exists marts.replies (
    reply_date date not null,
    phone_e164 varchar,
    country_code varchar,
    iso_code varchar,
    sign_name varchar,
    extend_code varchar,
    reply_content varchar,
    reply_time timestamptz,
    serial_no varchar,
    is_opt_out boolean not null,
    record_key varchar not null,
    sms_sdk_app_id varchar     -- a reply is (sms_sdk_app_id, record_key); attributed within its application
                               -- (a reply pushed without one: the answered message's, else null)
);

-- Delivery per send day, application, country and template, from marts.message_status. `submitted` counts
-- sends-log messages; a group with none (messages known only by their receipts: no sends log, or
-- SerialNos the log does not know) has submitted, pending, delivery_rate and receipt_coverage null.
-- Rates come from the row's counts (null when the denominator is 0), never from averaged rates.
create table if not exists marts.delivery_daily (
    day date not null,                  -- the messages' send_date (SMSLEDGER_TIMEZONE)
    iso_code varchar,
    sign_name varchar,
    template_id varchar,
    submitted bigint,                   -- sends-log messages (SendSms Code "Ok")
    receipts bigint not null,           -- messages with a final receipt
    delivered bigint not null,          -- final receipt SUCCESS
    failed bigint not null,             -- final receipt FAIL
    pending bigint,                     -- sends-log messages without a receipt
    delivery_rate double,               -- delivered / submitted
    delivered_of_receipts double,       -- delivered / (delivered + failed)
    receipt_coverage double,            -- receipts / submitted
    latency_p50_s double,               -- over delivered messages: user_receive_time - sent_at
    latency_p95_s double,
    fee bigint,                         -- sum of the sends log's Fee
    sms_sdk_app_id varchar,
    cost decimal(18, 6),                -- sum of marts.message_status.cost (null: no message priced)
    currency varchar
);

-- Conversions and replies per send day, application, country and template. A reply counts under the day (and
-- group) of the message it is attributed to, not the day it was received.
create table if not exists marts.conversion_daily (
    day date not null,                  -- the messages' send_date (SMSLEDGER_TIMEZONE)
    iso_code varchar,
    sign_name varchar,
    template_id varchar,
    delivered bigint not null,
    conversions bigint not null,        -- messages converted within the attribution window
    conversion_rate double,             -- conversions / delivered
    median_time_to_convert_s double,    -- converted_at - sent_at, over converted messages
    replies bigint not null,            -- replies attributed to the group's messages
    reply_rate double,                  -- replies / delivered
    opt_outs bigint not null,           -- of those replies, opt-outs
    sms_sdk_app_id varchar
);

-- Failed messages per send day, application, country and failure description.
create table if not exists marts.failure_reasons_daily (
    day date not null,
    iso_code varchar,
    description varchar,
    failed bigint not null,
    sms_sdk_app_id varchar
);

-- The provider's SendStatusStatistics and CallbackStatusStatistics, one row per hour. The provider
-- buckets messages by the hour they were sent. A partition day holds the hours that start in it.
create table if not exists marts.provider_statistics_hourly (
    hour timestamptz not null,          -- start of the hour, UTC
    day date not null,                  -- the partition day the hour starts in (SMSLEDGER_TIMEZONE)
    provider_hour varchar not null,     -- yyyymmddhh as asked (SMSLEDGER_PROVIDER_TIMEZONE)
    fee_count bigint,
    request_count bigint,
    request_success_count bigint,
    callback_count bigint,
    callback_success_count bigint,
    callback_fail_count bigint,
    callback_request_success_count bigint,
    internal_error_count bigint,
    invalid_number_count bigint,
    shutdown_error_count bigint,
    blacklist_count bigint,
    frequency_limit_count bigint,
    pulled_at timestamptz not null,
    sms_sdk_app_id varchar     -- one row per application and hour
);

-- Our counts of a day and application beside that application's provider statistics for the
-- hours of that day, and the differences (ours - provider; null when either side is unknown). One
-- row per partition day and application (every application seen in the days built, and the first
-- configured one).
create table if not exists marts.reconciliation_daily (
    day date not null,
    has_sends_log boolean not null,     -- the day has sends-log messages
    submitted bigint,                   -- null without a sends log
    provider_request_success_count bigint,
    submitted_diff bigint,
    receipts bigint not null,
    provider_callback_count bigint,
    receipts_diff bigint,
    delivered bigint not null,
    provider_callback_success_count bigint,
    delivered_diff bigint,
    failed bigint not null,
    provider_callback_fail_count bigint,
    failed_diff bigint,
    delivery_rate double,               -- ours: delivered sends-log messages / submitted
    provider_delivery_rate double,      -- CallbackSuccessCount / RequestSuccessCount: the app-level
                                        -- delivery rate that stands in without a sends log
    provider_hours bigint not null,     -- statistics hours of the day (0: none pulled)
    sms_sdk_app_id varchar     -- one row per day and application
);

-- Spend per send day, application, region, signature and template: the sends log's accepted
-- messages, their fee (billable segments) and its cost by raw.prices (null without a price).
create table if not exists marts.spend_daily (
    day date not null,                  -- the messages' send_date (SMSLEDGER_TIMEZONE)
    sms_sdk_app_id varchar,
    iso_code varchar,
    sign_name varchar,
    template_id varchar,
    messages bigint not null,           -- sends-log messages (SendSms Code "Ok")
    fee bigint,                         -- sum of their Fee
    cost decimal(18, 6),                -- sum of their cost (null: none priced)
    currency varchar
);

-- The key whose tokens marts.message_status and marts.replies hold instead of numbers
-- (SMSLEDGER_PII_KEY; `key_id` names it without revealing it): one row, or none while they hold
-- numbers (no key).
create table if not exists marts.phone_token_key (
    key_id varchar not null,
    since timestamptz not null
);
