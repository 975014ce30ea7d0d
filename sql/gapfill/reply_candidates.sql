-- Numbers whose reply may have been in a lost pull whose records lie in [$start_s, $end_s]: a
-- message of application $app was delivered to them (a SUCCESS receipt) within $window_s before the window's end.
-- Each delivery weighs by the share of reply delays ($edges, reply time minus delivery time) that
-- land in the window; a number weighs the sum. Unsolicited replies answer no delivery: they
-- cannot be looked for, and are counted instead.
with deliveries as (
    select phone_number, country_code, subscriber_number, unix_seconds(user_receive_time) as t
    from raw.send_status
    where sms_sdk_app_id = $app and pulled_at >= to_timestamp($start_s - $window_s) and report_status = 'SUCCESS'
      and unix_seconds(user_receive_time) between $start_s - $window_s and $end_s
)
select phone_number, country_code, subscriber_number,
       sum(delay_cdf($edges, $end_s - t) - delay_cdf($edges, $start_s - t)) as probability,
       max(t) as delivered_s
from deliveries
group by all
having probability > 0
order by probability desc, delivered_s desc, phone_number
limit $limit
