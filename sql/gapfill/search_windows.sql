-- For each waiting search of a lost pull, the record times that bound what it can have held. A
-- queue hands records out oldest first, so they come
--   after every record of the pulls completed before it was sent: `lower_t`, the latest record of
--     the last pull with new records completed before (pulled_at - pull_seconds; for a drain that
--     died, before the last `workers` pulls it wrote, as each worker may have had one in flight),
--   and before every record of the pulls sent after it failed: `upper_t`, the earliest record of
--     its successors from the `workers`-th on (the ones before may have run beside it) or
--     completed $max_pull_s s after it. Every successor of a dead drain's marker came after.
-- `successors` counts those: without any, the window's end is not known yet. Each application's
-- queues are queues of their own.
with pulls as (
    select batch_id, sms_sdk_app_id, action, pulled_at, outcome, records, new_records, pull_limit, pull_workers,
           pull_seconds, row_number() over (partition by sms_sdk_app_id, action order by pulled_at, batch_id) as seq
    from raw.batches
    where action in ('PullSmsSendStatus', 'PullSmsReplyStatus') and pulled_at >= to_timestamp($since_s)
),
lost as (
    select s.search_id, p.sms_sdk_app_id, p.action, p.seq, p.pulled_at,
           s.reason like 'dead%' as dead,
           coalesce(p.pull_workers, $default_workers) as workers,
           coalesce(p.pull_seconds, $max_pull_s) as seconds
    from raw.gap_fill_searches s join pulls p on p.batch_id = s.search_id
    where s.outcome = 'waiting'
),
sent as (
    select l.search_id, l.sms_sdk_app_id, l.action,
           case when l.dead then coalesce(w.pulled_at, '-infinity'::timestamptz)
                else l.pulled_at - to_microseconds(cast(l.seconds * 1e6 as bigint)) end as sent_at
    from lost l left join pulls w
        on w.sms_sdk_app_id = l.sms_sdk_app_id and w.action = l.action and w.seq = l.seq - l.workers
),
lower_pull as (
    select s.search_id, p.batch_id, p.pulled_at
    from sent s asof join (select * from pulls where new_records > 0) p
        on p.sms_sdk_app_id = s.sms_sdk_app_id and p.action = s.action and s.sent_at >= p.pulled_at
),
successors as (
    select l.search_id, p.batch_id, p.pulled_at, p.new_records
    from lost l join pulls p
        on p.sms_sdk_app_id = l.sms_sdk_app_id and p.action = l.action
       and p.seq > l.seq and p.seq < l.seq + l.workers + $reach
    where p.outcome = 'ok'
      and (l.dead or p.seq >= l.seq + l.workers
           or p.pulled_at >= l.pulled_at + to_microseconds(cast($max_pull_s * 1e6 as bigint)))
),
needed as (
    select batch_id, pulled_at from lower_pull
    union
    select batch_id, pulled_at from successors where new_records > 0
),
record_times as (
    select batch_id, pulled_at, unix_seconds(user_receive_time) as t
    from raw.send_status where action = 'PullSmsSendStatus' and pulled_at >= to_timestamp($since_s)
    union all
    select batch_id, pulled_at, unix_seconds(reply_time)
    from raw.reply_status where action = 'PullSmsReplyStatus' and pulled_at >= to_timestamp($since_s)
),
times as (
    -- joined on pulled_at too: records carry their batch's, and it lets the scan skip old row groups
    select r.batch_id, min(r.t) as first_t, max(r.t) as last_t
    from record_times r join needed n on n.batch_id = r.batch_id and n.pulled_at = r.pulled_at
    where r.t between $usable_from_s and $usable_to_s  -- a zero or junk time says nothing of the order
    group by r.batch_id
)
select l.search_id,
       epoch(l.pulled_at)::bigint as lost_s,
       lt.last_t as lower_t,
       (select min(t.first_t) from successors u join times t using (batch_id) where u.search_id = l.search_id) as upper_t,
       (select count(*) from successors u where u.search_id = l.search_id) as successors
from lost l
left join lower_pull lp using (search_id)
left join times lt on lt.batch_id = lp.batch_id
