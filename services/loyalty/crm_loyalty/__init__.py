"""crm_loyalty: the retention stage — loyalty accounts, points, tiers by spend, retention benefits."""
