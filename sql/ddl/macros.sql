-- Macros of every connection (temporary: they live in the session, so a read-only connection has
-- them too). Unix times arrive as seconds or, from a dirty feed or a log that wrote them so, as
-- milliseconds; {milliseconds_from} is the threshold of pipelines/normalize/timestamps.py, filled
-- in from there so the two cannot drift. Rows are selected by these rules in SQL, and placed on
-- their exact day (local_date) after polars has normalized their times.

-- Whole unix seconds of a time in seconds or milliseconds.
create or replace temp macro unix_seconds(t) as
    case when t >= {milliseconds_from} then t // 1000 else t end;

-- The date of an instant in time zone tz (an IANA name): the day a row is staged on.
create or replace temp macro local_date(t, tz) as cast(timezone(tz, t) as date);

-- Whether a time in seconds or milliseconds falls within a day of [start_s, end_s): a day of
-- margin on each side covers every partition time zone.
create or replace temp macro near_window(t, start_s, end_s) as
    t between start_s - 86400 and end_s + 86400
    or t between (start_s - 86400) * 1000 and (end_s + 86400) * 1000;

-- Whether a reply's text is an opt-out: one of `words` (lower case), surrounding white space and
-- punctuation, ASCII or not ("退订。", "STOP!"), ignored. Used by sql/marts/replies.sql and the
-- reply-text purge (pipelines/warehouse/retention.py), so both see the same opt-outs.
create or replace temp macro is_opt_out(content, words) as
    coalesce(list_contains(words, lower(regexp_replace(content, '^[\s\p{P}\p{Z}]+|[\s\p{P}\p{Z}]+$', '', 'g'))), false);
