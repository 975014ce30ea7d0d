-- Delay distributions as gap filling keeps them: the share of delays shorter than each edge
-- 2^(k/4) - 1 seconds, k = 0 .. bins (a list of bins + 1 shares, from 0 to 1), linear in between
-- on that log scale. Temporary macros of the session, made before the gap-fill queries run.
create or replace temp macro delay_position(seconds) as 4 * log2(greatest(seconds, 0) + 1);
create or replace temp macro delay_bin(seconds, bins) as
    least(cast(floor(delay_position(seconds)) as integer), bins - 1);
create or replace temp macro delay_cdf(edges, seconds) as
    case when seconds < 0 then 0.0
         when delay_position(seconds) >= len(edges) - 1 then list_extract(edges, len(edges))
         else list_extract(edges, cast(floor(delay_position(seconds)) as integer) + 1)
              + (delay_position(seconds) - floor(delay_position(seconds)))
                * (list_extract(edges, cast(floor(delay_position(seconds)) as integer) + 2)
                   - list_extract(edges, cast(floor(delay_position(seconds)) as integer) + 1))
    end;
