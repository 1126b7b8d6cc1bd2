"""crm_marketing: campaigns (plan, launch, responses, results) and leads (capture, grade, score, qualify, convert)."""
