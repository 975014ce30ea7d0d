-- How long after a delivery replies came, from a sample of the replies pulled since $from_s: each
-- reply against the latest delivery to the same number before it (within $window_s), per delay
-- bin; and how many replies answered no delivery (unsolicited, or a number written another way).
with replies as (
    select phone_number, unix_seconds(reply_time) as t
    from raw.reply_status
    where pulled_at >= to_timestamp($from_s) and unix_seconds(reply_time) between $from_s and $usable_to_s
),
sampled as (select * from replies using sample reservoir({sample} rows) repeatable (7)),
deliveries as (
    select phone_number, unix_seconds(user_receive_time) as t
    from raw.send_status
    where pulled_at >= to_timestamp($from_s - $window_s) and report_status = 'SUCCESS'
      and phone_number in (select phone_number from sampled)
      and unix_seconds(user_receive_time) between $from_s - $window_s and $usable_to_s
),
answered as (
    select s.t - d.t as delay
    from sampled s asof left join deliveries d on d.phone_number = s.phone_number and s.t >= d.t
)
select 'delay' as what, delay_bin(delay, $bins) as bin, count(*) as n
from answered where delay <= $window_s
group by all
union all
select 'replies', null, count(*) from answered
union all
select 'unanswered', null, count(*) filter (where delay is null or delay > $window_s) from answered
