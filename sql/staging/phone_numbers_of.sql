-- The normalized form of each number of _phone_keys.
-- `distinct`: on a DuckLake two writers staging at once can both add the same number (there is no
-- unique key to stop the second); their rows are equal (same normalizer), so one is kept and the
-- staging join never doubles a message.
select distinct p.phone_number, p.country_code_in, p.subscriber_number, p.phone_e164, p.country_code, p.iso_code,
       p.phone_valid
from (select * from staging.phone_numbers where normalizer = $normalizer) p
semi join _phone_keys k
  on p.phone_number is not distinct from k.phone_number
 and p.country_code_in is not distinct from k.country_code_in
 and p.subscriber_number is not distinct from k.subscriber_number
