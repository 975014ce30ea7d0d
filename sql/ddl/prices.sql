-- The price table (SMSLEDGER_PRICES, pipelines/warehouse/prices.py): the unit price of a billable
-- segment by region, message type and the day it applies from. Replaced whole at every load;
-- empty without a price table (costs are then null).
create table if not exists raw.prices (
    region varchar not null,           -- ISO 3166 code of the recipient (CN, ID, ...)
    message_type varchar not null,     -- mainland | international
    unit_price decimal(18, 6) not null,
    currency varchar not null,         -- ISO 4217
    valid_from date not null           -- applies to messages sent that day and after
);
