-- Every indeterminate queue pull (or drain that died) since $since_s that no search knows yet
-- becomes one search of its application, waiting for the pulls after it (they bound what it can have held).
-- What it can have lost: its Limit; a drain that died (a marker without pull_seconds) may have had
-- one pull in flight per worker. Markers of an older version carry neither: Limit $default_limit.
insert into raw.gap_fill_searches (search_id, reason, action, lost_at, capacity, max_calls, outcome, sms_sdk_app_id)
select b.batch_id,
       case when b.pull_limit is not null and b.pull_seconds is null then 'dead_' else 'lost_' end
           || case b.action when 'PullSmsSendStatus' then 'receipt' else 'reply' end
           || case when b.pull_limit is not null and b.pull_seconds is null then '_drain' else '_pull' end,
       b.action || 'ByPhoneNumber',
       b.pulled_at,
       coalesce(b.pull_limit, $default_limit)
           * case when b.pull_limit is not null and b.pull_seconds is null
                  then coalesce(b.pull_workers, $default_workers) else 1 end as capacity,
       $calls_per_record * capacity,
       'waiting',
       b.sms_sdk_app_id
from raw.batches b
where b.outcome = 'indeterminate'
  and b.action in ('PullSmsSendStatus', 'PullSmsReplyStatus')
  and b.pulled_at >= to_timestamp($since_s)
  and b.batch_id not in (select search_id from raw.gap_fill_searches)
