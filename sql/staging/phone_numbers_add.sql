-- Add the newly normalized numbers of _phone_new that are not there yet (an anti-join insert:
-- no unique constraint, so that the table also lives on DuckLake).
insert into staging.phone_numbers (phone_number, country_code_in, subscriber_number, normalizer, phone_e164,
                                   country_code, iso_code, phone_valid)
select n.phone_number, n.country_code_in, n.subscriber_number, $normalizer, n.phone_e164, n.country_code,
       n.iso_code, n.phone_valid
from _phone_new n
anti join (select * from staging.phone_numbers where normalizer = $normalizer) p
  on p.phone_number is not distinct from n.phone_number
 and p.country_code_in is not distinct from n.country_code_in
 and p.subscriber_number is not distinct from n.subscriber_number
