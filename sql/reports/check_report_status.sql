-- Messages whose report_status is neither SUCCESS, FAIL nor null (pending), for the check allowed_report_status.
select report_status, count(*) as n from marts.message_status
where report_status is not null and report_status not in ('SUCCESS', 'FAIL')
group by report_status order by n desc, report_status
