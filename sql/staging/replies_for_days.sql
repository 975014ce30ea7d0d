-- Replies whose ReplyTime may fall in [$start_s, $end_s) (near_window: seconds or milliseconds);
-- the exact day is decided after normalization.
select * from raw.reply_status
where near_window(reply_time, $start_s::bigint, $end_s::bigint)
