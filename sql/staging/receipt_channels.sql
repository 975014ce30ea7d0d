-- The channels each receipt arrived by (pull: the queue or by number; callback: a push), kept for
-- the receipts that ever arrived by push; a receipt not listed here came by pull only. Run before
-- the group's new receipts are stored, with the group's arrivals in _arrivals (record_key,
-- channel): a pushed receipt that was pulled before gets its earlier pull listed too.
insert into raw.receipt_channels (record_key, channel)
with incoming as (
    select distinct record_key, channel from _arrivals
),
pushed as (
    select record_key from incoming where channel = 'callback'
    union
    select c.record_key from raw.receipt_channels c
    where c.channel = 'callback' and c.record_key in (select record_key from incoming)
),
earlier_pulls as (
    select distinct s.record_key, 'pull' as channel
    from raw.send_status s
    where s.record_key in (select record_key from incoming where channel = 'callback')
      and s.action not like 'Callback%'
),
arrivals as (
    select record_key, channel from incoming where record_key in (select record_key from pushed)
    union
    select record_key, channel from earlier_pulls
)
select a.record_key, a.channel
from arrivals a
anti join raw.receipt_channels c using (record_key, channel)
