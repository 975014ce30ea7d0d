-- The numbers of _phone_keys (phone_number, country_code_in, subscriber_number) that
-- staging.phone_numbers does not hold for this $normalizer yet.
select k.phone_number, k.country_code_in, k.subscriber_number
from _phone_keys k
anti join (select * from staging.phone_numbers where normalizer = $normalizer) p
  on p.phone_number is not distinct from k.phone_number
 and p.country_code_in is not distinct from k.country_code_in
 and p.subscriber_number is not distinct from k.subscriber_number
