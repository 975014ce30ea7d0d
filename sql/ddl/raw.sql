-- Raw layer: every record as received, with where it came from. Idempotent DDL.
-- A lake gets these tables without their primary keys, which DuckLake does not have
-- (pipelines/warehouse/db.py's ensure_schema). The writers keep the keys unique on both: the
-- loader's ledger, and upserts by MERGE (db.upsert_frame), never `insert or replace`.
create schema if not exists raw;
create schema if not exists staging;
create schema if not exists marts;

-- One row per spooled response (or indeterminate pull): the batch ledger. A batch is loaded once.
create table if not exists raw.batches (
    batch_id varchar primary key,
    action varchar not null,
    pulled_at timestamptz not null,
    request_id varchar,
    outcome varchar not null,          -- ok | error | indeterminate | unparseable
    error_code varchar,
    error_message varchar,
    records integer not null,          -- records in the response
    new_records integer not null,      -- of which not seen before
    quarantined integer not null,
    loaded_at timestamptz not null default current_timestamp,
    -- What an indeterminate pull can have lost, for gap filling; null for responses, and for markers
    -- of older versions (gap filling then assumes Limit 100, 4 workers). A ledger made before these
    -- columns is rebuilt with them when the warehouse is opened (pipelines/warehouse/db.py).
    pull_limit integer,                -- the Limit the pull asked for
    pull_workers integer,              -- pulls its drain ran at once
    pull_seconds double,               -- how long it ran before it failed; null for a drain that died
    sms_sdk_app_id varchar             -- the application whose queue or by-number pull it is
);

-- Delivery receipts from PullSmsSendStatus and PullSmsSendStatusByPhoneNumber.
-- record_key = SerialNo | ReportStatus | receive time in seconds: the same receipt from a repeated
-- queue record or from a by-number pull is stored once.
create table if not exists raw.send_status (
    record_key varchar not null,
    serial_no varchar,
    phone_number varchar,
    country_code varchar,
    subscriber_number varchar,
    report_status varchar,
    description varchar,
    user_receive_time bigint,
    session_context varchar,
    extra_fields json,                 -- unknown fields, and values of an unexpected type
    batch_id varchar not null,
    record_index integer not null,
    action varchar not null,
    pulled_at timestamptz not null,
    request_id varchar
);

-- The channels a pushed receipt arrived by: 'callback' (smsledger receive), 'pull' (the queue or
-- by number). Only receipts that ever arrived by push are listed: the rest came by pull only.
create table if not exists raw.receipt_channels (
    record_key varchar not null,
    channel varchar not null
);

-- Replies from PullSmsReplyStatus and PullSmsReplyStatusByPhoneNumber.
-- record_key = E.164 number | signature | reply time in seconds | content.
create table if not exists raw.reply_status (
    record_key varchar not null,
    phone_number varchar,
    country_code varchar,
    subscriber_number varchar,
    sign_name varchar,
    extend_code varchar,
    reply_content varchar,
    reply_time bigint,
    extra_fields json,
    batch_id varchar not null,
    record_index integer not null,
    action varchar not null,
    pulled_at timestamptz not null,
    request_id varchar
);

-- SendStatusStatistics and CallbackStatusStatistics, one row per application and provider hour
-- (a re-pull deletes and inserts the hour: pipelines/ingest/statistics.py).
create table if not exists raw.statistics_hourly (
    sms_sdk_app_id varchar,
    provider_hour varchar not null,     -- yyyymmddhh in SMSLEDGER_PROVIDER_TIMEZONE, as sent
    hour timestamptz not null,          -- its start, UTC
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
    send_request_id varchar,
    callback_request_id varchar,
    pulled_at timestamptz not null
);

-- The sending application's SendSms log and conversion events: one row per record key, inserted
-- once and never deleted (re-reading, rotating or rewriting a file adds only records not seen).
-- The key: serial_no and phone_number for a send with a SerialNo, the whole content for a failed
-- send without one, serial_no and conversion_time for a conversion.
-- source_file and source_row: where the record was first read.
create table if not exists raw.sends (
    serial_no varchar,
    phone_number varchar,
    fee bigint,
    session_context varchar,
    code varchar,
    message varchar,
    iso_code varchar,
    send_time bigint,
    sms_sdk_app_id varchar,
    template_id varchar,
    sign_name varchar,
    source_file varchar not null,
    source_row integer not null
);

create table if not exists raw.conversions (
    serial_no varchar,
    conversion_time bigint,
    source_file varchar not null,
    source_row integer not null
);

-- Input files read so far: an unchanged file is not read again, and a file that only grew is
-- read from read_bytes on (records: how many records came before it) when the fingerprint of
-- the part before it still matches. rows and quarantined: what the file added, all reads.
create table if not exists raw.source_files (
    source_file varchar primary key,
    kind varchar not null,
    size_bytes bigint not null,
    mtime_ns bigint not null,
    rows integer not null,
    quarantined integer not null,
    loaded_at timestamptz not null default current_timestamp,
    read_bytes bigint,
    records bigint,
    fingerprint varchar
);

-- Warehouses made before read positions were kept.
alter table raw.source_files add column if not exists read_bytes bigint;
alter table raw.source_files add column if not exists records bigint;
alter table raw.source_files add column if not exists fingerprint varchar;

-- Records that could not be keyed or parsed, with the reason. Nothing is dropped silently.
create table if not exists raw.quarantine (
    source varchar not null,           -- the action, or sends / conversions
    reason varchar not null,
    payload varchar,
    batch_id varchar not null,         -- the spool batch or the source file
    record_index integer not null,     -- -1 for a whole response or file
    quarantined_at timestamptz not null default current_timestamp
);

-- Signatures and templates (DescribeSmsSignList / DescribeSmsTemplateList).
create table if not exists raw.signs (
    sign_id bigint primary key,
    sign_name varchar,
    international integer,
    status_code integer,
    review_reply varchar,
    create_time bigint,
    pulled_at timestamptz not null
);

create table if not exists raw.templates (
    template_id bigint primary key,
    template_name varchar,
    template_content varchar,
    international integer,
    status_code integer,
    review_reply varchar,
    create_time bigint,
    pulled_at timestamptz not null
);

-- Gap filling: one search per loss the ledger knows of (an indeterminate queue pull, a drain that
-- died, a receipt without a usable time), done once; `open` ones are resumed by the next run.
create table if not exists raw.gap_fill_searches (
    search_id varchar primary key,     -- the lost pull's batch_id, or unusable_time|<receipt record_key>
    reason varchar not null,           -- lost_receipt_pull | lost_reply_pull | dead_receipt_drain | dead_reply_drain | unusable_receipt_time
    action varchar not null,           -- the by-number action it calls
    lost_at timestamptz not null,      -- pulled_at of the lost pull (or of the receipt)
    window_start bigint,               -- record times (unix seconds) the lost records can have, margin included
    window_end bigint,
    capacity integer not null,         -- records it can have lost: Limit (x workers for a drain that died)
    max_calls integer not null,        -- by-number calls it may make in all (2 x capacity)
    candidates integer not null default 0,  -- numbers ranked for it
    calls integer not null default 0,  -- by-number calls made (pages)
    numbers_asked integer not null default 0,
    records_found integer not null default 0,  -- records in its window we did not have
    new_records integer not null default 0,    -- records its calls added to raw
    outcome varchar not null,          -- waiting | open | complete | bounded | beyond_retention
    registered_at timestamptz not null default current_timestamp,
    searched_at timestamptz,
    sms_sdk_app_id varchar             -- the application whose queue lost it (its by-number pulls look)
);

-- The numbers a search asked, so a resumed search does not ask them again.
create table if not exists raw.gap_fill_calls (
    search_id varchar not null,
    phone_e164 varchar not null,
    begin_time bigint not null,
    end_time bigint not null,
    calls integer not null,            -- pages (a full page splits the window)
    records_found integer not null,
    batch_ids varchar[],               -- its spooled pages
    called_at timestamptz not null default current_timestamp
);
