-- Per send day: the receipts of the day's messages by the channels they arrived by (push
-- callback, pull, both), for the check receipts_by_channel.
with receipts as (
    select send_date as day, record_key
    from staging.receipts
    where send_date between $first_day and $last_day
),
channels as (
    select record_key, string_agg(channel, '+' order by channel) as channels
    from raw.receipt_channels
    where record_key in (select record_key from receipts)
    group by record_key
)
select r.day, count(*) as receipts,
       count(*) filter (c.channels = 'callback') as callback_only,
       count(*) filter (c.channels = 'callback+pull') as both_channels,
       count(*) filter (c.channels is null) as pull_only
from receipts r left join channels c using (record_key)
group by r.day
order by r.day
