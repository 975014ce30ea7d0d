-- Marts: what users query. Daily tables are rewritten per partition day. Idempotent DDL.

-- One row per message (SerialNo): the send, its final receipt, its conversion.
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
    in_sends_log boolean not null
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
    record_key varchar not null
);
