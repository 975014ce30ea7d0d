-- Replies whose ReplyTime may fall in [$start_s::bigint, $end_s::bigint), in seconds or milliseconds; the exact
-- day is decided after normalization.
select * from raw.reply_status
where reply_time between $start_s::bigint - 86400 and $end_s::bigint + 86400
   or reply_time between ($start_s::bigint - 86400) * 1000 and ($end_s::bigint + 86400) * 1000
