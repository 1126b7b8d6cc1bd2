"""crm_customer360: the read side — one 360° record per customer, built from every origin's events."""
