-- Rows of the raw tables, for the load step's metadata.
select (select count(*) from raw.send_status), (select count(*) from raw.reply_status),
       (select count(*) from raw.quarantine)
